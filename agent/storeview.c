/*
 * storeview.c: the store as the command-line tools read it (see storeview.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <voca/xalloc.h>

#include "storeview.h"

int storeview_open(const char *cmd, const char *file, const char *dbpath, struct config *cfg,
                   char *rules_path, size_t rules_len, sqlite3 **db)
{
	char err[512];
	struct stat sb;

	*db = NULL;
	if (config_load(file, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "voca %s: %s\n", cmd, err);
		return -1;
	}
	if (dbpath == NULL) {
		dbpath = cfg->store.path;
	} else if (cfg->store.rules_path == NULL) { /* the state file beside the store named */
		free(cfg->store.path);
		cfg->store.path = xstrdup(dbpath);
		dbpath = cfg->store.path;
	}
	if (rules_path && config_rules_path(cfg, rules_path, rules_len) < 0) {
		fprintf(stderr, "voca %s: store.rules_path: too long\n", cmd);
		goto fail;
	}
	if (stat(dbpath, &sb) < 0) {
		fprintf(stderr, "voca %s: no store at %s (has voca run started?)\n", cmd, dbpath);
		goto fail;
	}
	if (sqlite3_open_v2(dbpath, db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "voca %s: %s: %s\n", cmd, dbpath, sqlite3_errmsg(*db));
		goto fail;
	}
	sqlite3_busy_timeout(*db, 5000);
	return 0;
fail:
	sqlite3_close(*db);
	*db = NULL;
	config_free(cfg);
	return -1;
}

cJSON *storeview_rows(sqlite3 *db, cJSON *parent, const char *name, const char *sql,
                      const int64_t *args, int nargs)
{
	cJSON *arr;
	sqlite3_stmt *s;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return NULL;
	for (int i = 0; i < nargs; i++)
		sqlite3_bind_int64(s, i + 1, args[i]);
	arr = cJSON_AddArrayToObject(parent, name);
	while (sqlite3_step(s) == SQLITE_ROW) {
		cJSON *row = cJSON_CreateObject();

		cJSON_AddItemToArray(arr, row);
		for (int i = 0; i < sqlite3_column_count(s); i++) {
			const char *col = sqlite3_column_name(s, i);

			switch (sqlite3_column_type(s, i)) {
			case SQLITE_INTEGER:
			case SQLITE_FLOAT:
				cJSON_AddNumberToObject(row, col, sqlite3_column_double(s, i));
				break;
			case SQLITE_NULL: cJSON_AddNullToObject(row, col); break;
			default:
				cJSON_AddStringToObject(row, col,
				                        (const char *)sqlite3_column_text(s, i));
			}
		}
	}
	sqlite3_finalize(s);
	return arr;
}

double storeview_num(const cJSON *row, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

const char *storeview_str(const cJSON *row, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);

	return cJSON_IsString(v) ? v->valuestring : "";
}

void storeview_print_json(const cJSON *o)
{
	char *s = cJSON_Print(o);

	puts(s);
	cJSON_free(s);
}
