"""100 MB COPY in and out through pgscope while its memory stays bounded."""

import hashlib
import time

import harness as h

MB = 1000 * 1000
TOTAL_ROWS = 100_000
PAYLOAD = 1000                      # bytes of text per row: about 100 MB in all
RSS_LIMIT_KB = 20 * 1000
OUT_SQL = ("COPY (SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, %d) g) TO STDOUT"
           % TOTAL_ROWS)


class RowSource:
    """A file-like object producing COPY text rows on demand (never all in memory)."""

    def __init__(self, rows):
        self.rows, self.next_row, self.pending, self.sent = rows, 0, b"", 0
        self.digest = hashlib.md5()

    def _row(self, i):
        text = ("%08d" % i) * (PAYLOAD // 8)
        return ("%d\t%s\n" % (i, text)).encode()

    def read(self, size=65536):
        while len(self.pending) < size and self.next_row < self.rows:
            self.pending += self._row(self.next_row)
            self.next_row += 1
        chunk, self.pending = self.pending[:size], self.pending[size:]
        self.sent += len(chunk)
        self.digest.update(chunk)
        return chunk

    readline = read


class Sink:
    """A file-like object that hashes what COPY TO writes; can stall to mimic a slow client."""

    def __init__(self, stall_at=()):
        self.size, self.digest, self.stall_at = 0, hashlib.md5(), sorted(stall_at)

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.size += len(data)
        self.digest.update(data)
        if self.stall_at and self.size >= self.stall_at[0]:
            self.stall_at.pop(0)
            time.sleep(1.0)


def test_copy_in_100mb_bounded_memory():
    cluster = h.shared_cluster()
    cluster.psql("DROP TABLE IF EXISTS big_in; CREATE UNLOGGED TABLE big_in(id int, payload text)")
    px = h.proxy()
    conn = px.connect()
    try:
        source = RowSource(TOTAL_ROWS)
        with h.RssSampler(px.proc.pid) as rss:
            with conn.cursor() as cur:
                cur.copy_expert("COPY big_in FROM STDIN", source, size=65536)
            conn.commit()
        h.note("copy in %d MB, pgscope RSS %d kB, peak %d kB, +%d kB"
               % (source.sent // MB, rss.start_kb, rss.max_kb, rss.growth_kb))
        assert source.sent >= 100 * MB, source.sent
        check = cluster.psql("SELECT count(*), sum(length(payload)), "
                             "md5(string_agg(id::text, ',' ORDER BY id)) FROM big_in")
        expected_ids = ",".join(str(i) for i in range(TOTAL_ROWS))
        expected = "%d|%d|%s\n" % (TOTAL_ROWS, TOTAL_ROWS * (PAYLOAD // 8) * 8,
                                   hashlib.md5(expected_ids.encode()).hexdigest())
        assert check == expected, (check, expected)
        assert rss.growth_kb < RSS_LIMIT_KB, "pgscope RSS grew by %d kB" % rss.growth_kb
    finally:
        conn.close()
        cluster.psql("DROP TABLE IF EXISTS big_in")


def copy_out(connection_factory, stall_at=()):
    conn = connection_factory()
    try:
        sink = Sink(stall_at)
        with conn.cursor() as cur:
            cur.copy_expert(OUT_SQL, sink, size=65536)
        return sink
    finally:
        conn.close()


def test_copy_out_100mb_bounded_memory():
    cluster = h.shared_cluster()
    px = h.proxy()
    with h.RssSampler(px.proc.pid) as rss:
        # The client pauses twice mid-stream: pgscope must stop reading the server, not buffer.
        proxied = copy_out(px.connect, stall_at=(10 * MB, 60 * MB))
    h.note("copy out %d MB, pgscope RSS %d kB, peak %d kB, +%d kB"
           % (proxied.size // MB, rss.start_kb, rss.max_kb, rss.growth_kb))
    direct = copy_out(cluster.connect)
    assert proxied.size >= 100 * MB, proxied.size
    assert (proxied.size, proxied.digest.hexdigest()) == (direct.size, direct.digest.hexdigest())
    assert rss.growth_kb < RSS_LIMIT_KB, "pgscope RSS grew by %d kB" % rss.growth_kb
