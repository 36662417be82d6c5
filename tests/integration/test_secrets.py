"""With store_params off (the default), no value the application sent reaches pgscope's files:
a literal of every kind of statement PostgreSQL's grammar has, sent with the simple and the
extended protocol, is looked for in the SQLite file (and its -wal and -shm, while running and
after the stop) and in pgscope's log.

The statement kinds come from the grammar: every *Stmt node type of libpg_query's protobuf
definition is either covered by CASES below or listed in NO_LITERAL with the reason it cannot
carry a literal, and each case is parsed with libpg_query to check that it is the node type it
claims to be."""

import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import time

import harness as h

PROTO = "/usr/include/pg_query/pg_query.proto"

# In each statement, {p} is the pass ("s" simple, "x" extended) and {n} its digit (1, 2), so
# that the two passes make their own objects and markers. Markers are mk_{p}_<what>_93817, or
# numbers and other literal forms with a distinctive run of digits (8675309..., 19.7...).
# Statements listed under None set up what a later case needs and carry no marker. A list is
# sent as it is, in order, on one connection (a transaction, a cursor's life).
CASES = [
    ("CreateStmt", "CREATE TABLE sec_t_{p} (id int PRIMARY KEY, a text DEFAULT "
     "'mk_{p}_tabledefault_93817' CHECK (a <> 'mk_{p}_check_93817'), "
     "b bigint DEFAULT 86753{n}9101, c varchar(19{n}7283))"),
    (None, "CREATE TABLE sec_parent_{p} (a text) PARTITION BY LIST (a)"),
    ("CreateStmt", "CREATE TABLE sec_part_{p} PARTITION OF sec_parent_{p} "
     "FOR VALUES IN ('mk_{p}_partition_93817')"),
    ("InsertStmt", "INSERT INTO sec_t_{p} (id, a) VALUES (1, 'mk_{p}_insert_93817')"),
    ("InsertStmt", "INSERT INTO sec_t_{p} (id, a) VALUES (1, 'x') ON CONFLICT (id) "
     "DO UPDATE SET a = 'mk_{p}_onconflict_93817'"),
    ("UpdateStmt", "UPDATE sec_t_{p} SET a = 'mk_{p}_update_93817' WHERE id = 86753{n}9102"),
    ("DeleteStmt", "DELETE FROM sec_t_{p} WHERE a = 'mk_{p}_delete_93817'"),
    ("MergeStmt", "MERGE INTO sec_t_{p} t USING (SELECT 2 AS id) s ON t.id = s.id "
     "WHEN NOT MATCHED THEN INSERT (id, a) VALUES (s.id, 'mk_{p}_merge_93817')"),
    ("SelectStmt", "SELECT 'mk_{p}_select_93817'"),
    ("SelectStmt", "VALUES ('mk_{p}_values_93817')"),
    ("SelectStmt", r"SELECT E'mk_{p}_estring_93817\n'"),
    ("SelectStmt", "SELECT U&'mk_{p}_ustring_93817'"),
    ("SelectStmt", "SELECT N'mk_{p}_nstring_93817'"),
    ("SelectStmt", "SELECT $$mk_{p}_dollar_93817$$"),
    ("SelectStmt", "SELECT $q$mk_{p}_dollartag_93817$q$"),
    ("SelectStmt", "SELECT B'1011001110001111000{n}'"),
    ("SelectStmt", "SELECT X'ABCDEF867530{n}'"),
    ("SelectStmt", "SELECT 86753{n}9103, 86753{n}9.104e2"),
    ("SelectStmt", "SELECT date '1917-08-1{n}', interval '93{n}17 seconds'"),
    ("SelectStmt", "SELECT '{mk_{p}_array_93817}'::text[]"),
    ("SelectStmt", "SELECT '{\"mk_{p}_json_93817\": 1}'::jsonb"),
    ("SelectStmt", "SELECT pg_notify('sec_chan', 'mk_{p}_pgnotify_93817')"),
    ("SelectStmt", "SELECT set_config('sec.cfg', 'mk_{p}_setconfig_93817', false)"),
    ("SelectStmt", "SELECT 'mk_{p}_selectinto_93817' AS a INTO sec_si_{p}"),
    ("SelectStmt", "SELECT 'mk_{p}_union_93817' UNION ALL SELECT 'x'"),
    ("SelectStmt", "SELECT 'mk_{p}_badint_93817'::int"),  # fails; the message quotes it
    ("SelectStmt", "SELECT 1 FROM sec_t_{p} LIMIT 86753{n}9105"),
    ("CopyStmt", "COPY (SELECT 'mk_{p}_copyto_93817') TO STDOUT"),
    ("CopyStmt", "COPY sec_t_{p} TO STDOUT WITH (NULL 'mk_{p}_copynull_93817', DELIMITER '|')"),
    ("CopyStmt", "COPY sec_t_{p} FROM '/nonexistent/mk_{p}_copyfile_93817'"),
    ("PrepareStmt", "PREPARE sec_p_{p}(text) AS SELECT $1, 'mk_{p}_prepare_93817'"),
    ("ExecuteStmt", "EXECUTE sec_p_{p}('mk_{p}_execute_93817')"),
    ("CreateFunctionStmt", "CREATE FUNCTION sec_f_{p}(a text DEFAULT 'mk_{p}_fndefault_93817') "
     "RETURNS text LANGUAGE sql SET sec.fn = mk_{p}_fnsetword_93817 "
     "AS 'SELECT ''mk_{p}_fnbody_93817'''"),
    ("CreateFunctionStmt", "CREATE FUNCTION sec_r_{p}() RETURNS text LANGUAGE sql "
     "RETURN 'mk_{p}_return_93817'"),
    ("CreateFunctionStmt", "CREATE PROCEDURE sec_proc_{p}(a text) LANGUAGE plpgsql "
     "AS $$BEGIN PERFORM 'mk_{p}_procbody_93817'; END$$"),
    ("CallStmt", "CALL sec_proc_{p}('mk_{p}_call_93817')"),
    ("AlterFunctionStmt", "ALTER FUNCTION sec_f_{p}(text) SET sec.a = 'mk_{p}_alterfn_93817'"),
    ("AlterFunctionStmt", "ALTER FUNCTION sec_f_{p}(text) SET sec.b = mk_{p}_alterfnword_93817"),
    ("DoStmt", "DO $$BEGIN PERFORM 'mk_{p}_do_93817'; END$$"),
    ("DoStmt", "DO LANGUAGE plpgsql 'BEGIN PERFORM ''mk_{p}_dostring_93817''; END'"),
    ("NotifyStmt", "NOTIFY sec_chan, 'mk_{p}_notify_93817'"),
    ("CommentStmt", "COMMENT ON TABLE sec_t_{p} IS 'mk_{p}_comment_93817'"),
    ("SecLabelStmt", "SECURITY LABEL ON TABLE sec_t_{p} IS 'mk_{p}_seclabel_93817'"),  # fails
    ("CreateTableAsStmt", "CREATE TABLE sec_ctas_{p} AS SELECT 'mk_{p}_ctas_93817' AS a"),
    ("CreateTableAsStmt", "CREATE MATERIALIZED VIEW sec_mv_{p} AS "
     "SELECT 'mk_{p}_matview_93817' AS a"),
    ("ViewStmt", "CREATE VIEW sec_v_{p} AS SELECT 'mk_{p}_view_93817' AS a"),
    ("CreateRoleStmt", "CREATE ROLE sec_role_{p} PASSWORD 'mk_{p}_createrolepw_93817' "
     "VALID UNTIL '1917-09-1{n}'"),
    ("AlterRoleStmt", "ALTER ROLE sec_role_{p} WITH PASSWORD 'mk_{p}_alterrolepw_93817'"),
    ("AlterRoleStmt", "ALTER ROLE sec_role_{p} CONNECTION LIMIT 19{n}7284"),
    ("AlterRoleSetStmt", "ALTER ROLE sec_role_{p} SET sec.x = 'mk_{p}_rolesetq_93817'"),
    ("AlterRoleSetStmt", "ALTER ROLE sec_role_{p} IN DATABASE postgres "
     "SET sec.y TO mk_{p}_rolesetword_93817, 86753{n}9106"),
    ("AlterDatabaseSetStmt", "ALTER DATABASE postgres SET sec.z = 'mk_{p}_dbset_93817'"),
    ("AlterSystemStmt", "ALTER SYSTEM SET sec.s = 'mk_{p}_altersystem_93817'"),
    ("AlterSystemStmt", "ALTER SYSTEM SET sec.w = mk_{p}_altersystemword_93817"),
    ("VariableSetStmt", "SET sec.q = 'mk_{p}_set_93817'"),
    ("VariableSetStmt", "SET sec.r TO mk_{p}_setword_93817"),
    ("VariableSetStmt", "SET SESSION sec.t = 86753{n}9107"),
    ("TransactionStmt", [
        "BEGIN",
        ("VariableSetStmt", "SET LOCAL sec.l = 'mk_{p}_setlocal_93817'"),
        ("DeclareCursorStmt", "DECLARE sec_c_{p} CURSOR FOR "
         "SELECT 'mk_{p}_declare_93817' FROM generate_series(1, 5)"),
        ("FetchStmt", "FETCH FORWARD 19{n}7285 FROM sec_c_{p}"),
        ("FetchStmt", "MOVE ABSOLUTE 19{n}7286 IN sec_c_{p}"),
        "CLOSE sec_c_{p}",
        "COMMIT"]),
    ("CreateFdwStmt", "CREATE FOREIGN DATA WRAPPER sec_fdw_{p} OPTIONS (opt 'mk_{p}_fdw_93817')"),
    ("AlterFdwStmt", "ALTER FOREIGN DATA WRAPPER sec_fdw_{p} "
     "OPTIONS (SET opt 'mk_{p}_alterfdw_93817')"),
    ("CreateForeignServerStmt", "CREATE SERVER sec_srv_{p} VERSION 'mk_{p}_serverversion_93817' "
     "FOREIGN DATA WRAPPER sec_fdw_{p} OPTIONS (host 'mk_{p}_server_93817')"),
    ("AlterForeignServerStmt", "ALTER SERVER sec_srv_{p} "
     "OPTIONS (ADD port 'mk_{p}_alterserver_93817')"),
    ("CreateUserMappingStmt", "CREATE USER MAPPING FOR postgres SERVER sec_srv_{p} "
     "OPTIONS (user 'mk_{p}_umuser_93817', password 'mk_{p}_umpassword_93817')"),
    ("AlterUserMappingStmt", "ALTER USER MAPPING FOR postgres SERVER sec_srv_{p} "
     "OPTIONS (SET password 'mk_{p}_alterum_93817')"),
    ("CreateForeignTableStmt", "CREATE FOREIGN TABLE sec_ft_{p} "
     "(a text DEFAULT 'mk_{p}_ftdefault_93817') SERVER sec_srv_{p} "
     "OPTIONS (table_name 'mk_{p}_ftoption_93817')"),
    ("ImportForeignSchemaStmt", "IMPORT FOREIGN SCHEMA remote FROM SERVER sec_srv_{p} "
     "INTO public OPTIONS (opt 'mk_{p}_import_93817')"),  # fails: no handler
    ("CreateDomainStmt", "CREATE DOMAIN sec_dom_{p} AS text DEFAULT 'mk_{p}_domdefault_93817' "
     "CHECK (VALUE <> 'mk_{p}_domcheck_93817')"),
    ("AlterDomainStmt", "ALTER DOMAIN sec_dom_{p} SET DEFAULT 'mk_{p}_altdomdefault_93817'"),
    ("AlterDomainStmt", "ALTER DOMAIN sec_dom_{p} ADD CONSTRAINT sec_dc "
     "CHECK (VALUE <> 'mk_{p}_altdomcheck_93817')"),
    ("AlterTableStmt", "ALTER TABLE sec_t_{p} ALTER COLUMN a "
     "SET DEFAULT 'mk_{p}_altertabledefault_93817'"),
    ("AlterTableStmt", "ALTER TABLE sec_t_{p} ADD CONSTRAINT sec_chk "
     "CHECK (a <> 'mk_{p}_altercheck_93817')"),
    ("AlterTableStmt", "ALTER TABLE sec_t_{p} ADD COLUMN d text DEFAULT 'mk_{p}_addcolumn_93817'"),
    ("IndexStmt", "CREATE INDEX sec_i_{p} ON sec_t_{p} (a) WHERE a <> 'mk_{p}_indexwhere_93817'"),
    ("CreatePolicyStmt", "CREATE POLICY sec_pol ON sec_t_{p} USING (a = 'mk_{p}_policy_93817')"),
    ("AlterPolicyStmt", "ALTER POLICY sec_pol ON sec_t_{p} "
     "USING (a = 'mk_{p}_alterpolicy_93817')"),
    ("RuleStmt", "CREATE RULE sec_rule AS ON INSERT TO sec_t_{p} "
     "WHERE NEW.a = 'mk_{p}_rule_93817' DO INSTEAD NOTHING"),
    (None, "CREATE FUNCTION sec_trgf_{p}() RETURNS trigger LANGUAGE plpgsql "
     "AS $$BEGIN RETURN NEW; END$$"),
    ("CreateTrigStmt", "CREATE TRIGGER sec_trg BEFORE INSERT ON sec_t_{p} FOR EACH ROW "
     "WHEN (NEW.a = 'mk_{p}_trigwhen_93817') "
     "EXECUTE FUNCTION sec_trgf_{p}('mk_{p}_trigarg_93817')"),
    ("CreateEventTrigStmt", "CREATE EVENT TRIGGER sec_evt_{p} ON ddl_command_start "
     "WHEN TAG IN ('mk_{p}_evttag_93817') EXECUTE FUNCTION sec_trgf_{p}()"),  # fails
    ("CreateEnumStmt", "CREATE TYPE sec_enum_{p} AS ENUM ('mk_{p}_enum_93817')"),
    ("AlterEnumStmt", "ALTER TYPE sec_enum_{p} ADD VALUE 'mk_{p}_addvalue_93817'"),
    ("AlterEnumStmt", "ALTER TYPE sec_enum_{p} RENAME VALUE 'mk_{p}_enum_93817' "
     "TO 'mk_{p}_renamevalue_93817'"),
    ("CompositeTypeStmt", "CREATE TYPE sec_comp_{p} AS (a varchar(19{n}7287))"),
    ("CreateRangeStmt", "CREATE TYPE sec_range_{p} AS RANGE (subtype = int4, "
     "multirange_type_name = 'mk_{p}_multirange_93817')"),
    ("DefineStmt", "CREATE AGGREGATE sec_agg_{p}(int) (SFUNC = int4pl, STYPE = int, "
     "INITCOND = '19{n}7288')"),
    ("DefineStmt", "CREATE COLLATION sec_coll_{p} (provider = icu, "
     "locale = 'mk_{p}_collation_93817')"),
    ("CreateSeqStmt", "CREATE SEQUENCE sec_seq_{p} START 86753{n}9108 MAXVALUE 86753{n}9199"),
    ("AlterSeqStmt", "ALTER SEQUENCE sec_seq_{p} RESTART WITH 86753{n}9110"),
    ("CreateConversionStmt", "CREATE CONVERSION sec_conv_{p} FOR 'mk_{p}_conversion_93817' "
     "TO 'UTF8' FROM iso8859_1_to_utf8"),  # fails: no such encoding
    ("CreateOpClassStmt", "CREATE OPERATOR CLASS sec_opc_{p} FOR TYPE int4 USING btree "
     "AS OPERATOR 19{n}7289 <"),  # fails: no such strategy
    ("AlterOpFamilyStmt", "ALTER OPERATOR FAMILY integer_ops USING btree "
     "ADD OPERATOR 19{n}7290 < (int4, int4)"),  # fails
    ("CreateTableSpaceStmt", "CREATE TABLESPACE sec_ts_{p} "
     "LOCATION '/nonexistent/mk_{p}_tablespace_93817'"),  # fails
    ("AlterTableSpaceOptionsStmt", "ALTER TABLESPACE pg_default "
     "SET (random_page_cost = 19{n}7291)"),
    ("CreatedbStmt", "CREATE DATABASE sec_db_{p} CONNECTION LIMIT 19{n}7292"),
    ("AlterDatabaseStmt", "ALTER DATABASE sec_db_{p} CONNECTION LIMIT 19{n}7293"),
    ("CreateSchemaStmt", "CREATE SCHEMA sec_s_{p} CREATE TABLE sec_st "
     "(a text DEFAULT 'mk_{p}_schemaelt_93817')"),
    ("CreateExtensionStmt", "CREATE EXTENSION IF NOT EXISTS plpgsql "
     "VERSION 'mk_{p}_extversion_93817'"),
    ("AlterExtensionStmt", "ALTER EXTENSION plpgsql UPDATE TO 'mk_{p}_extupdate_93817'"),
    ("CreatePublicationStmt", "CREATE PUBLICATION sec_pub_{p} FOR TABLE sec_t_{p} "
     "WHERE (a <> 'mk_{p}_pubwhere_93817')"),
    ("AlterPublicationStmt", "ALTER PUBLICATION sec_pub_{p} "
     "SET (publish = 'mk_{p}_alterpub_93817')"),  # fails
    ("CreateSubscriptionStmt", "CREATE SUBSCRIPTION sec_sub_{p} "
     "CONNECTION 'host=127.0.0.1 password=mk_{p}_subconn_93817' PUBLICATION sec_pub_{p} "
     "WITH (connect = false)"),
    ("AlterSubscriptionStmt", "ALTER SUBSCRIPTION sec_sub_{p} "
     "CONNECTION 'password=mk_{p}_altersub_93817'"),
    ("CreateStatsStmt", "CREATE STATISTICS sec_stat_{p} ON (a || 'mk_{p}_stats_93817'), b "
     "FROM sec_t_{p}"),
    ("AlterStatsStmt", "ALTER STATISTICS sec_stat_{p} SET STATISTICS 19{n}7294"),  # fails
    ("ExplainStmt", "EXPLAIN SELECT 'mk_{p}_explain_93817'"),
    ("ExplainStmt", "EXPLAIN (FORMAT JSON) SELECT * FROM sec_t_{p} "
     "WHERE a = 'mk_{p}_explainjson_93817'"),
    ("AlterTSDictionaryStmt", "ALTER TEXT SEARCH DICTIONARY simple "
     "(StopWords = 'mk_{p}_tsdict_93817')"),  # fails
    ("LoadStmt", "LOAD 'mk_{p}_load_93817'"),  # fails
    ("VacuumStmt", "VACUUM (PARALLEL 19{n}7295) sec_t_{p}"),  # fails: out of range
    ("TransactionStmt", [
        "BEGIN",
        "INSERT INTO sec_t_{p} (id) VALUES (3)",
        ("TransactionStmt", "PREPARE TRANSACTION 'mk_{p}_preparetx_93817'"),
        ("TransactionStmt", "COMMIT PREPARED 'mk_{p}_preparetx_93817'")]),
    # Slow enough to be sampled: its plan is stored, and its advice. The replay follows the
    # search_path the client set.
    ("SelectStmt", [
        ("VariableSetStmt", "SET search_path = 'mk_{p}_searchpath_93817', public"),
        ("SelectStmt", "SELECT n FROM sec_big WHERE tag = 'mk_{p}_slowplan_93817' "
         "ORDER BY n LIMIT 5")]),
]

# The node types of the grammar that cannot hold a literal in any position: names, keywords
# and options whose values are keywords, nothing else.
NO_LITERAL = {
    "RawStmt": "the wrapper around every statement",
    "SetOperationStmt": "made by parse analysis; UNION parses as a SelectStmt (covered)",
    "ReturnStmt": "only inside a function body: RETURN 'x' is covered under CreateFunctionStmt",
    "PLAssignStmt": "PL/pgSQL assignments, never sent as SQL (DO bodies are covered)",
    "GrantStmt": "names and privilege keywords",
    "GrantRoleStmt": "names",
    "AlterDefaultPrivilegesStmt": "names and privilege keywords",
    "ClosePortalStmt": "a cursor name (sent in the cursor case)",
    "ClusterStmt": "names",
    "DropStmt": "names",
    "TruncateStmt": "names",
    "RenameStmt": "names",
    "ListenStmt": "a channel name (an identifier, not a value)",
    "UnlistenStmt": "a channel name",
    "DropdbStmt": "a name and FORCE",
    "VariableShowStmt": "a setting's name",
    "DiscardStmt": "keywords",
    "CreatePLangStmt": "names",
    "DropRoleStmt": "names",
    "LockStmt": "names and a lock mode",
    "ConstraintsSetStmt": "names",
    "ReindexStmt": "names and boolean options",
    "CheckPointStmt": "no argument",
    "AlterDatabaseRefreshCollStmt": "a name",
    "CreateCastStmt": "type and function names",
    "CreateOpFamilyStmt": "names",
    "DeallocateStmt": "a statement name",
    "DropTableSpaceStmt": "a name",
    "AlterObjectDependsStmt": "names",
    "AlterObjectSchemaStmt": "names",
    "AlterOwnerStmt": "names",
    "AlterOperatorStmt": "names of functions in its options",
    "AlterTypeStmt": "names of functions and types in its options",
    "DropOwnedStmt": "names",
    "ReassignOwnedStmt": "names",
    "AlterTSConfigurationStmt": "names",
    "DropUserMappingStmt": "names",
    "AlterTableMoveAllStmt": "names",
    "AlterExtensionContentsStmt": "object names",
    "AlterEventTrigStmt": "a name and a keyword",
    "RefreshMatViewStmt": "a name",
    "ReplicaIdentityStmt": "only inside ALTER TABLE, with index names",
    "CreateTransformStmt": "names",
    "CreateAmStmt": "names",
    "DropSubscriptionStmt": "a name",
    "AlterCollationStmt": "a name",
}

NODE_TYPE_HELPER = r"""
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statements separated by NUL bytes on stdin; one line of parse tree JSON (or ERROR) each. */
int main(void)
{
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);

    buf[n] = '\0';
    for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
        PgQueryParseResult r = pg_query_parse(p);
        if (r.error)
            printf("ERROR %s\n", r.error->message);
        else
            printf("%s\n", r.parse_tree);
        pg_query_free_parse_result(r);
    }
    return 0;
}
"""


def fill(sql, p):
    return sql.replace("{p}", p).replace("{n}", "1" if p == "s" else "2")


def flat_cases():
    """(node type or None, template) for every statement, in sending order."""
    out = []
    for kind, sql in CASES:
        if isinstance(sql, str):
            out.append((kind, sql))
            continue
        out += [item if isinstance(item, tuple) else (None, item) for item in sql]
    return out


def scripts(p):
    """The statements of pass p, each a list sent on one connection."""
    groups = []
    for kind, sql in CASES:
        items = sql if isinstance(sql, list) else [sql]
        groups.append([fill(i[1] if isinstance(i, tuple) else i, p) for i in items])
    return groups


def markers(p):
    """Every value of pass p that must not reach pgscope's files: the literal forms."""
    found = set()
    for _, sql in flat_cases():
        text = fill(sql, p)
        found.update(re.findall(r"mk_%s_[a-z]+_93817" % p, text))
        found.update(re.findall(r"86753\d{5}|86753\d\d\.\d{3}e2|19\d7\d{3}|1917-0\d-\d\d|"
                                r"93\d17 seconds", text))
    n = "1" if p == "s" else "2"
    found.update(["1011001110001111000" + n, "abcdef867530" + n])
    return found


def proto_statement_types():
    with open(PROTO) as f:
        return set(re.findall(r"^message (\w+Stmt)\b", f.read(), re.M))


def parse_trees(directory, statements):
    """libpg_query's parse tree of each statement, or None if the helper cannot be built."""
    src, exe = os.path.join(directory, "nodetype.c"), os.path.join(directory, "nodetype")
    with open(src, "w") as f:
        f.write(NODE_TYPE_HELPER)
    res = h.run(["cc", "-o", exe, src, "-lpg_query"], timeout=60)
    if res.rc != 0:
        return None
    out = subprocess.run([exe], input=b"\0".join(s.encode() for s in statements),
                         stdout=subprocess.PIPE, timeout=60, check=True).stdout.decode()
    return [None if line.startswith("ERROR") else json.loads(line)
            for line in out.splitlines()]


def test_secrets_every_statement_kind_of_the_grammar():
    """Every statement node type is covered or known to hold no literal, and each case parses
    as the node type it is listed under."""
    if not os.path.exists(PROTO):
        h.note("no %s: coverage not checked against the grammar" % PROTO)
        return
    kinds = proto_statement_types()
    covered = {k for k, _ in flat_cases() if k}
    assert not covered & set(NO_LITERAL), covered & set(NO_LITERAL)
    missing = kinds - covered - set(NO_LITERAL)
    unknown = (covered | set(NO_LITERAL)) - kinds
    assert not missing and not unknown, ("not covered", sorted(missing), "unknown", unknown)
    assert len(covered) >= 30, len(covered)
    typed = [(k, fill(s, "s")) for k, s in flat_cases() if k]
    directory = h.make_temp_dir("pgscope-secrets-")
    try:
        trees = parse_trees(directory, [s for _, s in typed])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if trees is None:
        h.note("no C compiler or libpg_query: node types not checked")
    else:
        for (kind, sql), tree in zip(typed, trees):
            assert tree is not None, ("libpg_query rejects", sql)
            got = list(tree["stmts"][0]["stmt"].keys())[0]
            assert got == kind, (sql, "is a", got, "not a", kind)
    h.note("%d statement kinds with literals, %d without, of %d in the grammar"
           % (len(covered), len(NO_LITERAL), len(kinds)))

# ---------------------------------------------------------------- sending


def run_simple(pg, p, directory):
    """Pass p through psql: each statement its own Query message; errors do not stop it."""
    lines = []
    for group in scripts(p):
        lines.extend(s + ";" for s in group)
    # COPY FROM STDIN with its rows inline: the rows are values too.
    lines.append("COPY sec_t_%s (id, a) FROM STDIN WITH (NULL 'mk_%s_copyfrom_93817');" % (p, p))
    lines.append("42\tmk_%s_copydata_93817" % p)
    lines.append("\\.")
    path = os.path.join(directory, "pass_%s.sql" % p)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    cmd = [os.path.join(h.PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", path]
    res = h.run(cmd, env=h.client_env(pg.host, pg.port), timeout=120)
    assert res.rc == 0, res
    return len(lines) - 2


def message(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\0"


def extended_round(sock, sql):
    """Parse, Bind, Describe, Execute, Sync of sql (no parameters: the literal is in the text);
    read up to ReadyForQuery."""
    sock.sendall(message(b"P", cstr("") + cstr(sql) + struct.pack("!H", 0)) +
                 message(b"B", cstr("") + cstr("") + struct.pack("!HHH", 0, 0, 0)) +
                 message(b"D", b"P" + cstr("")) +
                 message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S"))
    while True:
        kind, payload = h.read_message(sock)
        if kind == b"G":  # COPY FROM STDIN is not sent this way; end it if it comes
            sock.sendall(message(b"f", cstr("not here")))
        if kind == b"Z":
            return


def run_extended(pg, p):
    sent = 0
    for group in scripts(p):
        sock = h.raw_login(pg.host, pg.port, user=h.SUPERUSER, timeout=60)
        try:
            for sql in group:
                extended_round(sock, sql)
                sent += 1
            sock.sendall(message(b"X"))
        finally:
            sock.close()
    return sent


def run_loop(pg, directory):
    """An N+1 loop with its literals inline, so that its finding holds the child's text."""
    lines = ["SELECT id FROM sec_t_s;"]
    lines += ["SELECT a FROM sec_t_s WHERE a = 'mk_s_loop%d_93817';" % i for i in range(8)]
    path = os.path.join(directory, "loop.sql")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    res = h.run([os.path.join(h.PG_BIN, "psql"), "-X", "-q", "-f", path],
                env=h.client_env(pg.host, pg.port), timeout=60)
    assert res.rc == 0, res
    return ["mk_s_loop%d_93817" % i for i in range(8)]

# ---------------------------------------------------------------- looking


def copy_files(db, directory):
    """A copy of the SQLite file and its -wal and -shm as they are now (before a checkpoint)."""
    copies = []
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            dst = os.path.join(directory, "running.db" + suffix)
            shutil.copyfile(db + suffix, dst)
            copies.append(dst)
    return copies


def leaks(paths, wanted):
    """{marker: [files holding it]}; hex markers are looked for in either case."""
    found = {}
    for path in paths:
        with open(path, "rb") as f:
            data = f.read().lower()
        for m in wanted:
            if m.lower().encode() in data:
                found.setdefault(m, []).append(os.path.basename(path))
    return found


def stored_texts(db, marker):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        rows = []
        for table, col in (("statements", "query"), ("n_plus_one", "child_queries"),
                           ("plans", "query"), ("plans", "plan"),
                           ("index_suggestions", "ddl")):
            rows += [r[0][:200] for r in con.execute(
                "SELECT %s FROM %s WHERE lower(%s) LIKE ?" % (col, table, col),
                ("%" + marker.lower() + "%",))]
        return rows
    finally:
        con.close()


def test_secrets_no_literal_stored_or_logged():
    cluster = h.Cluster(settings={"max_prepared_transactions": "2"}).start()
    cluster.psql("CREATE TABLE sec_big AS SELECT g AS n, (g %% 1000)::text AS tag "
                 "FROM generate_series(1, %d) g; ANALYZE sec_big" % 1000000)
    pg = h.Pgscope(cluster, args=["--log-level", "debug", "--explain-min-duration", "10"])
    pg.start()
    directory = h.make_temp_dir("pgscope-secrets-")
    try:
        sent = run_simple(pg, "s", directory)
        sent += run_extended(pg, "x")
        loop = run_loop(pg, directory)
        time.sleep(2)  # snapshots every 500 ms; EXPLAIN samples come back
        copies = copy_files(pg.db, directory)
        assert pg.stop() == 0, pg.log_text()
        con = sqlite3.connect("file:%s?mode=ro" % pg.db, uri=True)
        calls = con.execute("SELECT sum(calls) FROM statements").fetchone()[0]
        plans = con.execute("SELECT count(*) FROM plans").fetchone()[0]
        loops = con.execute("SELECT count(*) FROM n_plus_one").fetchone()[0]
        con.close()
        assert calls >= sent, (calls, sent)
        assert plans >= 1 and loops >= 1, (plans, loops)  # the paths looked at were taken
        finals = [pg.db + s for s in ("", "-wal", "-shm") if os.path.exists(pg.db + s)]
        wanted = markers("s") | markers("x") | set(loop) | {
            "mk_s_copyfrom_93817", "mk_s_copydata_93817"}
        found = leaks(copies + finals + [pg.log], wanted)
        detail = {m: (where, stored_texts(pg.db, m)) for m, where in sorted(found.items())}
        assert not found, "%d of %d values stored or logged: %s" % (
            len(found), len(wanted), json.dumps(detail, indent=1))
        h.note("%d statements, %d values, %d plans, %d N+1 findings; none stored or logged"
               % (sent, len(wanted), plans, loops))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
