/* ds_limits.h - the sizes that both the C core and dstream's Lua code depend on, each defined
 * once, here. Lua reads them through core.limits() (ds_lua_core.c); no Lua file spells one
 * out. Sizes only one C module uses stay in that module. */
#ifndef DS_LIMITS_H
#define DS_LIMITS_H

/* The largest single record: receivers and text_file refuse longer lines, blocks refuse
 * longer records (-E2BIG). */
#define DS_RECORD_MAX (64u * 1024u * 1024u)

/* The size of a block store's blocks (ds_store_new(0)): records are appended into blocks
 * of about this many bytes. */
#define DS_BLOCK_BYTES (1u << 20)

/* text_file cuts a file's records into slices of up to this many bytes, so a big file is
 * not held three times over while it is cut. */
#define DS_SLICE_BYTES (4u << 20)

/* A worker keeps its output buffer for the next task up to this size; a larger one is
 * freed once its bytes are in C memory. */
#define DS_BUFFER_KEEP_BYTES (4u << 20)

#endif
