/* ds_version.h - the version string printed by `dstream --version`. */
#ifndef DS_VERSION_H
#define DS_VERSION_H
#define DS_VERSION "0.1.0"
#endif
