"""node-postgres through pgscope: the connection sequences its users run into end exactly as they
do against PostgreSQL (tests/integration/node/sequences.js, 100 runs each)."""

import json
import os
import shutil

import harness as h

NODE_DIR = os.path.join(h.HERE, "node")


def node_client_ready():
    """True when node and the pinned node-postgres are installed (contrib/install-deps.sh)."""
    return shutil.which("node") is not None and os.path.isdir(
        os.path.join(NODE_DIR, "node_modules", "pg"))


def play(host, port, runs):
    res = h.run(["node", os.path.join(NODE_DIR, "sequences.js"), host, str(port), "trust_user",
                 str(runs)], timeout=120)
    assert res.rc == 0, res
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_node_postgres_sequences_end_as_they_do_directly():
    assert node_client_ready(), "node-postgres is not installed: run contrib/install-deps.sh"
    cluster = h.shared_cluster()
    px = h.proxy()
    direct = play(cluster.host, cluster.port, 100)
    proxied = play(px.host, px.port, 100)
    assert proxied == direct, "PostgreSQL: %r\npgscope:    %r" % (direct, proxied)
    assert px.alive(), px.log_text()
    h.note("; ".join("%s: %s" % (k, list(v)) for k, v in sorted(proxied.items())))
