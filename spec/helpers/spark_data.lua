-- The data generators of Apache Spark's MLlib test suites, for spec/ml_*_spec.lua:
-- java.util.Random bit for bit (the 48-bit LCG, nextDouble, nextGaussian's polar method), so
-- LinearDataGenerator.generateLinearInput and LogisticRegressionSuite.generateLogisticInput
-- give the very points Spark's suites train on; StreamingKMeansSuite's generator draws from
-- Spark's XORShiftRandom, which is not reproduced here: the same generator over
-- java.util.Random (same centres' law, same radius, same counts) stands in for it.
local bit = require("bit")

local D = {}

-- The seed is 48 bits kept as two 24-bit halves in doubles: exact, and no uint64 cdata (a
-- loop of uint64 multiplications and bit.band hung once compiled by this LuaJIT).
local M_HI, M_LO, TWO24 = 0x5DE, 0xECE66D, 2 ^ 24

local Random = {}
Random.__index = Random

function D.java_random(seed) -- seed: a whole number in 0 .. 2^31 - 1
  return setmetatable({ hi = bit.bxor(M_HI, math.floor(seed / TWO24)), lo = bit.bxor(M_LO, seed % TWO24) }, Random)
end

-- seed = (seed * 0x5DEECE66D + 0xB) mod 2^48; the top `bits` bits (bits <= 31: never negative).
function Random:next(bits)
  local hi, lo = self.hi, self.lo
  local t = lo * M_LO + 0xB
  local new_lo = t % TWO24
  local new_hi = (hi * M_LO + lo * M_HI + (t - new_lo) / TWO24) % TWO24
  self.hi, self.lo = new_hi, new_lo
  return math.floor((new_hi * TWO24 + new_lo) / 2 ^ (48 - bits))
end

function Random:next_double()
  return (self:next(26) * 134217728 + self:next(27)) * 2 ^ -53
end

function Random:next_gaussian()
  if self.have_next then
    self.have_next = false
    return self.next_next
  end
  local v1, v2, s
  repeat
    v1 = 2 * self:next_double() - 1
    v2 = 2 * self:next_double() - 1
    s = v1 * v1 + v2 * v2
  until s < 1 and s ~= 0
  local multiplier = math.sqrt(-2 * math.log(s) / s)
  self.next_next, self.have_next = v2 * multiplier, true
  return v1 * multiplier
end

-- LinearDataGenerator.generateLinearInput(intercept, weights, nPoints, seed, eps = 0.1):
-- x uniform in [-1, 1] (mean 0, variance 1/3), y = w.x + intercept + eps * N(0, 1).
-- Returns an array of { label, features }.
function D.linear_input(intercept, weights, n, seed, eps)
  eps = eps or 0.1
  local rnd = D.java_random(seed)
  local xs = {}
  for i = 1, n do
    local x = {}
    for j = 1, #weights do x[j] = rnd:next_double() end
    xs[i] = x
  end
  local half_width = math.sqrt(12.0 * (1.0 / 3.0))
  for i = 1, n do
    for j = 1, #weights do xs[i][j] = (xs[i][j] - 0.5) * half_width + 0.0 end
  end
  local out = {}
  for i = 1, n do
    local dot = 0
    for j = 1, #weights do dot = dot + xs[i][j] * weights[j] end
    out[i] = { dot + intercept + eps * rnd:next_gaussian(), xs[i] }
  end
  return out
end

-- LogisticRegressionSuite.generateLogisticInput(offset, scale, nPoints, seed): x ~ N(0, 1),
-- y = 1 with probability 1 / (1 + exp(-(offset + scale * x))).
function D.logistic_input(offset, scale, n, seed)
  local rnd = D.java_random(seed)
  local x1 = {}
  for i = 1, n do x1[i] = rnd:next_gaussian() end
  local out = {}
  for i = 1, n do
    local p = 1.0 / (1.0 + math.exp(-(offset + scale * x1[i])))
    out[i] = { rnd:next_double() < p and 1.0 or 0.0, { x1[i] } }
  end
  return out
end

-- StreamingKMeansSuite.StreamingKMeansDataGenerator(numPoints, numBatches, k, d, r, seed,
-- initCenters): k centres of N(0, 1) coordinates (or the ones given), and batches of points,
-- point idx around centre idx % k plus r * N(0, 1) per coordinate. Returns batches, centres.
function D.kmeans_input(num_points, num_batches, k, d, r, seed, init_centers)
  local rnd = D.java_random(seed)
  local centers = init_centers
  if not centers then
    centers = {}
    for c = 1, k do
      local v = {}
      for j = 1, d do v[j] = rnd:next_gaussian() end
      centers[c] = v
    end
  end
  local batches = {}
  for b = 1, num_batches do
    local batch = {}
    for idx = 0, num_points - 1 do
      local center = centers[idx % k + 1]
      local v = {}
      for j = 1, d do v[j] = center[j] + rnd:next_gaussian() * r end
      batch[idx + 1] = v
    end
    batches[b] = batch
  end
  return batches, centers
end

return D
