/* Clock, sleep and small helpers. POSIX here; on an MCU: esp_timer / k_uptime_get, vTaskDelay / k_msleep,
 * and the SNTP (or gateway serverTime) corrected wall clock. */
#ifndef FG_PLATFORM_H
#define FG_PLATFORM_H

#include <stdint.h>
#include <time.h>

/* Milliseconds from a monotonic clock (never jumps when the wall clock is set). */
int64_t fg_monotonic_ms(void);
void fg_sleep_ms(int64_t ms);
/* Seconds since the epoch from the device's own (possibly wrong) wall clock. */
int64_t fg_wall_clock_s(void);

/* UTC broken-down time to seconds since the epoch (timegm without the libc extension). */
int64_t fg_utc_to_epoch(int year, int month, int day, int hour, int minute, int second);
/* "2025-06-01T12:00:00.000Z" (fraction and Z optional) to epoch seconds; 0 on success. */
int fg_parse_iso8601(const char *text, int64_t *out);
/* Epoch seconds to "YYYY-MM-DDTHH:MM:SSZ". */
void fg_format_iso8601(int64_t epoch, char out[32]);

/* ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$ : safe in a topic level and as an MQTT client id. */
int fg_valid_device_id(const char *id);

#endif
