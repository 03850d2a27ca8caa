/* Persistent device state: named blobs in a state directory. Files here; on an MCU: NVS (ESP-IDF) or
 * settings / NVS / littlefs (Zephyr). Names used: device.key, device.crt, device.meta and, during a
 * renewal, renew.key, renew.crt, renew.meta. */
#ifndef FG_STORAGE_H
#define FG_STORAGE_H

#include <stddef.h>

/* Creates the state directory (0700) if needed. 0 on success. */
int fg_store_open(const char *dir);
int fg_store_exists(const char *name);
/* The whole blob, NUL-terminated (malloc'd), or NULL. */
char *fg_store_read(const char *name);
/* The same for any file (the --ca file a device starts with), NUL-terminated (malloc'd), or NULL. */
char *fg_read_file(const char *path);
/* Atomic replace: temporary file, fsync, rename. secret != 0 writes mode 0600 (private keys). */
int fg_store_write(const char *name, const char *data, int secret);
/* Atomic rename of one blob over another (the commit step of a renewal). */
int fg_store_rename(const char *from, const char *to);
int fg_store_remove(const char *name);
/* Where a blob lives, for libmosquitto which loads TLS credentials from files. On an MCU the transport
 * takes the PEM buffers from fg_store_read() instead. */
const char *fg_store_path(const char *name, char *buf, size_t size);

#endif
