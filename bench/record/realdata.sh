# Sourced by run.sh and compare.sh: makes the real programs' data in
# directory $1 and sets db (an SQLite database of 3000 rows, 4 KiB pages),
# query (what sqlite3 runs on it, through mmap) and mdb (an LMDB
# environment of 3000 key/value pairs, for mdb_dump).
make_real_data() {
	db=$1/bench.db
	sqlite3 "$db" "PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<3000)
INSERT INTO t SELECT i, hex(randomblob(32)) || printf('%06d', i) FROM c;"
	query='PRAGMA mmap_size=268435456; PRAGMA integrity_check; SELECT count(*), sum(length(x)) FROM t; SELECT x FROM t;'
	mdb=$1/mdb
	mkdir "$mdb"
	awk 'BEGIN { for (i = 0; i < 3000; i++) printf "key%06d\nvalue-%06d-%s\n", i, i, substr("abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz", 1 + i % 20, 40) }' >"$1/kv.txt"
	mdb_load -T -f "$1/kv.txt" "$mdb"
}
