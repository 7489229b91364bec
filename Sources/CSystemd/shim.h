#ifndef BERTH_CSYSTEMD_SHIM_H
#define BERTH_CSYSTEMD_SHIM_H
// Location fields are added by the Swift journald handler itself.
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif
