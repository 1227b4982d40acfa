-- dstream/worker/cdefs.lua: the C structs and functions worker code reaches through the FFI.
-- Mirrors runtime/ds_block.h, runtime/ds_task.h, runtime/ds_pool.h, runtime/ds_hash.h and runtime/ds_words.h:
-- change both together. The symbols are exported by the dstream executable.
local ffi = require("ffi")

ffi.cdef [[
typedef struct ds_block ds_block;
typedef struct ds_slice {
  ds_block *block;
  const char *data;
  size_t len;
  uint64_t count;
  int32_t format;
  int32_t pairs;
} ds_slice;
typedef struct ds_output {
  int32_t target;
  ds_slice slice;
} ds_output;
typedef struct ds_task {
  uint64_t id;
  int32_t attempt;
  int32_t worker;
  char *desc;
  size_t desc_len;
  ds_slice *inputs;
  int32_t ninputs;
  int32_t status;
  char *error;
  ds_output *outputs;
  int32_t noutputs;
  int32_t capoutputs;
  double run_ms;
  uint64_t records_in;
  struct ds_task *next;
  uint64_t progress[4];
} ds_task;
typedef struct ds_pool ds_pool;
void ds_block_retain(ds_block *b);
void ds_block_release(ds_block *b);

int ds_task_emit(ds_task *t, int32_t target, int32_t format, int32_t pairs, const void *p,
                 size_t len, uint64_t count);
void ds_task_progress(ds_task *t, uint64_t tag, uint64_t a, uint64_t b, uint64_t since_ms);
void ds_task_set_error(ds_task *t, int32_t status, const char *msg, size_t len);
int ds_text_file_read(const char *path, uint64_t start, uint64_t end, char **out, size_t *outlen,
                      uint64_t *count, char *err, size_t errlen);
void ds_text_file_free(char *buf);
int64_t ds_pool_copy_blob(ds_pool *p, uint32_t id, char *buf, size_t cap);
uint64_t ds_pool_blob_drops(ds_pool *p);
int64_t ds_pool_blob_dropped(ds_pool *p, uint64_t i);
uint32_t ds_hash_bytes(const char *p, size_t len);
uint32_t ds_hash_number(double v);
typedef struct ds_words_pos { uint64_t pos; uint64_t line_end; } ds_words_pos;
size_t ds_words_cut(const uint8_t *recs, size_t n, ds_words_pos *at, const uint8_t *is_space,
                    uint32_t *out, size_t max, void *strings);
uint64_t ds_words_line_of(const uint8_t *recs, size_t n, uint64_t off);
]]

return {
  FMT_LINES = 1,
  FMT_SBUF = 2,
}
