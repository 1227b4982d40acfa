/* ds_words.h - the words of lines in C memory, cut in C for the worker's read_words
 * (flat_map(dstream.text.words) over DS_FMT_LINES records: a 32-bit length, then the bytes).
 *
 * A word is a run of bytes that are not separators (is_space[b] != 0: the worker builds the
 * table from dstream.text.SPACE; a NUL byte belongs to its word). One call cuts up to `max`
 * words, so the Lua loop that makes a string of each is one flat loop over an array, with
 * no byte loop of its own: nested byte loops gave a trace structure that depended on which
 * loop got hot first (docs/performance.md). With SSE2 the bytes are looked at 64 at a time
 * (a mask of the separators; byte at a time for sets of more than 4 runs of byte values, and
 * near the records' end, where 64 bytes would read past them). Called by worker threads
 * through the FFI; it touches nothing shared, only the calling VM's own string table (read,
 * to prefetch). Offsets are 32-bit: a slice is at most DS_SLICE_BYTES, or one record of at
 * most DS_RECORD_MAX (ds_limits.h). */
#ifndef DS_WORDS_H
#define DS_WORDS_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* The reading position in n bytes of records: `pos`, the next byte to look at, and `line_end`,
 * the end of the line it is in (both 0 before the first record). */
typedef struct ds_words_pos {
  uint64_t pos;
  uint64_t line_end;
} ds_words_pos;

/* Cuts the next words of the records from *at on (is_space: 256 bytes, non-zero for a
 * separator): word i starts at byte out[2i] of recs and
 * is out[2i + 1] bytes long. Returns how many (at most max); fewer than max only when the
 * records have no more words. `strings`: the calling VM's string table (ds_words_strings),
 * where the caller is about to intern the words, or NULL: the table's slots and chains for
 * them are prefetched (patches/luajit/0005), so that the two cache misses of interning each
 * word (its slot, then the first string of its chain) overlap with the other words' instead
 * of coming one after the other; the words cut do not depend on it. */
size_t ds_words_cut(const uint8_t *recs, size_t n, ds_words_pos *at, const uint8_t *is_space,
                    uint32_t *out, size_t max, void *strings);

/* The string table of L's VM, for ds_words_cut; NULL when the LuaJIT linked cannot prefetch
 * it (the system's, without dstream's patches). Valid while L's VM is open. */
void *ds_words_strings(lua_State *L);

/* The byte offset of the record (its length prefix) that holds byte `off` of recs: where a
 * failing word's line starts (the error path only). */
uint64_t ds_words_line_of(const uint8_t *recs, size_t n, uint64_t off);

#endif
