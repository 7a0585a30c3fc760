/*
 * storeview.h: the store as the command-line tools read it (voca stats,
 * voca incidents, voca review).
 *
 * A read-only connection of its own (WAL lets it run beside the daemon),
 * and query results gathered into cJSON, which each tool prints either as
 * JSON (--json, for scripts and tests) or as text, so the two views cannot
 * disagree.
 */
#ifndef VOCA_STOREVIEW_H
#define VOCA_STOREVIEW_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "config.h"

/*
 * Loads the configuration file (NULL: built-in) into cfg and opens the store
 * it names, or dbpath when given, read-only. rules_path (may be NULL)
 * receives the rules' state file beside it. On failure prints "voca CMD:
 * why" on stderr and returns -1 with nothing to free; else the caller frees
 * cfg and closes *db.
 */
int storeview_open(const char *cmd, const char *file, const char *dbpath, struct config *cfg,
                   char *rules_path, size_t rules_len, sqlite3 **db);

/*
 * Runs sql with ?1..?n bound to args and adds its rows to parent as an array
 * named name, each row an object by column name (NULL as null, numbers as
 * numbers). Returns the array, or NULL if the statement does not prepare.
 */
cJSON *storeview_rows(sqlite3 *db, cJSON *parent, const char *name, const char *sql,
                      const int64_t *args, int nargs);

/* A row's number or string member, 0 or "" when absent. */
double storeview_num(const cJSON *row, const char *key);
const char *storeview_str(const cJSON *row, const char *key);

/* Prints o as JSON with a newline. */
void storeview_print_json(const cJSON *o);

#endif
