-- Zipf-distributed test data for the sketch specs: n draws of a word (or its rank) from a
-- vocabulary of `vocab` words with P(rank r) proportional to 1 / r^s, from a seeded MINSTD
-- generator (the same data in every run), and the exact answers the sketches are held to.
local Z = {}

-- The ranks (1..vocab) of n draws.
function Z.ranks(n, vocab, s, seed)
  local cdf, total = {}, 0
  for r = 1, vocab do
    total = total + 1 / r ^ s
    cdf[r] = total
  end
  local state = seed or 1
  local out = {}
  for i = 1, n do
    state = (state * 48271) % 2147483647
    local u = state / 2147483647 * total
    local lo, hi = 1, vocab
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] >= u then hi = mid else lo = mid + 1 end
    end
    out[i] = lo
  end
  return out
end

function Z.words(n, vocab, s, seed)
  local out = Z.ranks(n, vocab, s, seed)
  for i = 1, n do out[i] = "w" .. out[i] end
  return out
end

function Z.distinct(list)
  local seen, n = {}, 0
  for _, v in ipairs(list) do
    if not seen[v] then seen[v], n = true, n + 1 end
  end
  return n
end

function Z.counts(list)
  local c = {}
  for _, v in ipairs(list) do c[v] = (c[v] or 0) + 1 end
  return c
end

-- How far q * n is from the ranks value v holds in sorted (the exact data, sorted): 0 when
-- some copy of v sits at rank q * n (ties share their ranks), else the distance in records.
function Z.rank_error(sorted, v, q)
  local n = #sorted
  local lo, hi = 1, n + 1 -- first index with sorted[i] >= v
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if sorted[mid] >= v then hi = mid else lo = mid + 1 end
  end
  local first = lo
  lo, hi = first, n + 1 -- first index with sorted[i] > v
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if sorted[mid] > v then hi = mid else lo = mid + 1 end
  end
  local below, upto = first - 1, lo - 1 -- records < v, records <= v
  local target = q * n
  if target < below then return below - target end
  if target > upto then return target - upto end
  return 0
end

return Z
