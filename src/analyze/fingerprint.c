/* fingerprint.c — statement shapes: a PostgreSQL-faithful lexer, the pre-digest, the cache. */
#include "config.h"

#include "pgscope/fingerprint.h"
#include "pgscope/hash.h"

#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pg_query.h>

/* Bytes kept of a normalized text from libpg_query, and of a fallback text from the lexer. */
#define FP_NORMALIZED_MAX 16384
#define FP_FALLBACK_MAX 4096
#define FP_TAGS_MAX 32

/* ---- characters, as PostgreSQL 15's scan.l classifies them ---- */

/* Character classes; the lexer asks for every byte, so they come from one table. */
enum { C_SPACE = 1, C_DIGIT = 2, C_START = 4, C_CONT = 8, C_OP = 16 };

#define S_ C_SPACE
#define D_ (C_DIGIT | C_CONT)
#define L_ (C_START | C_CONT)
#define O_ C_OP
#define X_ C_CONT /* $ continues identifiers */

/* \v is not whitespace before PostgreSQL 16: it is a stray character, a syntax error. Every
 * byte with the high bit set is an identifier character: that is how PostgreSQL lets UTF-8
 * identifiers through without decoding them. */
/* clang-format off */
static const unsigned char char_class[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  S_, S_, 0,  S_, S_, 0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    S_, O_, 0,  O_, X_, O_, O_, 0,  0,  0,  O_, O_, 0,  O_, 0,  O_, /*  !"#$%&'()*+,-./ */
    D_, D_, D_, D_, D_, D_, D_, D_, D_, D_, 0,  0,  O_, O_, O_, O_, /* 0-9 :;<=>? */
    O_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, /* @A-O */
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, 0,  0,  0,  O_, L_, /* P-Z [\]^_ */
    O_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, /* `a-o */
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, 0,  O_, 0,  O_, 0,  /* p-z {|}~ DEL */
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, /* 0x80 */
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,
};
/* clang-format on */

#undef S_
#undef D_
#undef L_
#undef O_
#undef X_

static bool is_space(unsigned char c)
{
    return char_class[c] & C_SPACE;
}

static bool is_digit(unsigned char c)
{
    return char_class[c] & C_DIGIT;
}

static bool is_ident_start(unsigned char c)
{
    return char_class[c] & C_START;
}

static bool is_ident_cont(unsigned char c)
{
    return char_class[c] & C_CONT;
}

static bool is_op_char(unsigned char c)
{
    return char_class[c] & C_OP;
}

static unsigned char lower_ascii(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ---- the lexer ---- */

typedef enum tok_kind {
    TK_END,
    TK_COMMENT,
    TK_IDENT,  /* unquoted identifier or keyword */
    TK_QIDENT, /* "quoted" or U&"quoted" identifier */
    TK_OP,     /* a run of operator characters */
    TK_PUNCT,  /* one other byte, or :: := .. */
    TK_PARAM,  /* $n */
    TK_JUNK,   /* a number or parameter glued to identifier characters: always an error */
    /* literals, from here on */
    TK_INT,     /* an integer that fits in 32 bits: PostgreSQL's ICONST */
    TK_NUM,     /* any other number: FCONST */
    TK_STRING,  /* '...' */
    TK_ESTRING, /* E'...' */
    TK_BSTRING, /* B'...' */
    TK_XSTRING, /* X'...' */
    TK_NSTRING, /* N'...' */
    TK_USTRING, /* U&'...' */
    TK_DOLLAR   /* $tag$...$tag$ */
} tok_kind;

typedef struct token {
    tok_kind kind;
    size_t start, end;
    bool bad;       /* unterminated: PostgreSQL rejects the text */
    bool backslash; /* an E'...' string with a backslash escape */
} token;

typedef struct lexer {
    const char *s;
    size_t n; /* up to the first NUL: PostgreSQL reads query text as a C string */
    size_t pos;
} lexer;

enum quote_style { Q_STANDARD, Q_ESCAPE, Q_BITS };

static void lex_init(lexer *lx, const char *text, size_t len)
{
    const char *nul = text ? memchr(text, '\0', len) : NULL;

    lx->s = text ? text : "";
    lx->n = text ? (nul ? (size_t)(nul - text) : len) : 0;
    lx->pos = 0;
}

/* The byte at p, or 0 past the end (0 never occurs inside the text). */
static unsigned char at(const lexer *lx, size_t p)
{
    return p < lx->n ? (unsigned char)lx->s[p] : 0;
}

static bool is_literal(tok_kind k)
{
    return k >= TK_INT;
}

static size_t scan_line_comment(const lexer *lx, size_t p)
{
    while (p < lx->n && lx->s[p] != '\n' && lx->s[p] != '\r')
        p++;
    return p;
}

/* Block comments nest in PostgreSQL (unlike the SQL standard): count the levels. */
static size_t scan_block_comment(const lexer *lx, size_t p, token *t)
{
    size_t depth = 1;

    for (p += 2; p < lx->n;) {
        if (at(lx, p) == '/' && at(lx, p + 1) == '*') {
            depth++;
            p += 2;
        } else if (at(lx, p) == '*' && at(lx, p + 1) == '/') {
            p += 2;
            if (--depth == 0)
                return p;
        } else {
            p++;
        }
    }
    t->bad = true;
    return lx->n;
}

/* Quoted strings separated only by whitespace containing a newline are one literal
 * ('a'<newline>'b' is 'ab'). Returns the position of the quote that continues it, or 0.
 * PostgreSQL 15 allows no comment in that whitespace. */
static size_t quote_continues(const lexer *lx, size_t p)
{
    while (at(lx, p) == ' ' || at(lx, p) == '\t' || at(lx, p) == '\f')
        p++;
    if (at(lx, p) != '\n' && at(lx, p) != '\r')
        return 0;
    while (is_space(at(lx, p)))
        p++;
    return at(lx, p) == '\'' ? p : 0;
}

/* The rest of a quoted literal from just after its opening quote. Bit strings know no ''. */
static size_t scan_quoted(const lexer *lx, size_t p, enum quote_style style, token *t)
{
    for (;;) {
        while (p < lx->n && lx->s[p] != '\'') {
            if (style == Q_ESCAPE && lx->s[p] == '\\') {
                t->backslash = true;
                p++;
            }
            p++;
        }
        if (p >= lx->n) {
            t->bad = true;
            return lx->n;
        }
        p++;
        if (style != Q_BITS && at(lx, p) == '\'') {
            p++;
            continue;
        }
        size_t again = quote_continues(lx, p);
        if (again == 0)
            return p;
        p = again + 1;
    }
}

static size_t scan_quoted_ident(const lexer *lx, size_t p, token *t)
{
    for (;;) {
        while (p < lx->n && lx->s[p] != '"')
            p++;
        if (p >= lx->n) {
            t->bad = true;
            return lx->n;
        }
        p++;
        if (at(lx, p) != '"')
            return p;
        p++;
    }
}

/* PostgreSQL rejects digits followed by identifier characters (123abc, 1e, $1x). */
static size_t scan_junk(const lexer *lx, size_t p, token *t)
{
    t->kind = TK_JUNK;
    while (is_ident_cont(at(lx, p)))
        p++;
    return p;
}

/* The scanner makes an integer an ICONST when it fits in an int, an FCONST otherwise; only an
 * ICONST is accepted where the grammar wants a plain integer (varchar(10)). */
static bool fits_int32(const char *s, size_t n)
{
    while (n > 1 && *s == '0') {
        s++;
        n--;
    }
    return n < 10 || (n == 10 && memcmp(s, "2147483647", 10) <= 0);
}

static size_t scan_number(const lexer *lx, size_t p, token *t)
{
    size_t start = p;
    bool real = false;

    while (is_digit(at(lx, p)))
        p++;
    if (at(lx, p) == '.' && at(lx, p + 1) != '.') { /* 1..2 is 1, then .. */
        real = true;
        for (p++; is_digit(at(lx, p)); p++)
            ;
    }
    if (at(lx, p) == 'e' || at(lx, p) == 'E') {
        size_t q = p + 1;
        if (at(lx, q) == '+' || at(lx, q) == '-')
            q++;
        if (!is_digit(at(lx, q)))
            return scan_junk(lx, q, t);
        real = true;
        for (p = q; is_digit(at(lx, p)); p++)
            ;
    }
    if (is_ident_start(at(lx, p)))
        return scan_junk(lx, p, t);
    t->kind = real || !fits_int32(lx->s + start, p - start) ? TK_NUM : TK_INT;
    return p;
}

/* $1 is a parameter; $tag$...$tag$ (tag possibly empty) a dollar-quoted string; any other $
 * stands alone. The string ends at the first exact repeat of its opening delimiter. */
static size_t scan_dollar(const lexer *lx, size_t p, token *t)
{
    size_t q = p + 1;

    if (is_digit(at(lx, q))) {
        t->kind = TK_PARAM;
        while (is_digit(at(lx, q)))
            q++;
        return is_ident_start(at(lx, q)) ? scan_junk(lx, q, t) : q;
    }
    if (is_ident_start(at(lx, q)))
        while (is_ident_start(at(lx, q)) || is_digit(at(lx, q)))
            q++;
    if (at(lx, q) != '$') {
        t->kind = TK_PUNCT;
        return p + 1;
    }
    t->kind = TK_DOLLAR;
    size_t tag = q + 1 - p;
    for (size_t from = q + 1; from < lx->n;) {
        const char *d = memchr(lx->s + from, '$', lx->n - from);
        if (d == NULL)
            break;
        size_t end = (size_t)(d - lx->s) + tag;
        if (end <= lx->n && memcmp(d, lx->s + p, tag) == 0)
            return end;
        from = (size_t)(d - lx->s) + 1;
    }
    t->bad = true;
    return lx->n;
}

/* An identifier, unless its first letters open a prefixed literal (E'', B'', X'', N'', U&''). */
static size_t scan_word(const lexer *lx, size_t p, token *t)
{
    unsigned char c = lower_ascii(at(lx, p)), next = at(lx, p + 1);

    if (next == '\'') {
        switch (c) {
        case 'e':
            t->kind = TK_ESTRING;
            return scan_quoted(lx, p + 2, Q_ESCAPE, t);
        case 'b':
            t->kind = TK_BSTRING;
            return scan_quoted(lx, p + 2, Q_BITS, t);
        case 'x':
            t->kind = TK_XSTRING;
            return scan_quoted(lx, p + 2, Q_BITS, t);
        case 'n':
            t->kind = TK_NSTRING;
            return scan_quoted(lx, p + 2, Q_STANDARD, t);
        default:
            break;
        }
    }
    if (c == 'u' && next == '&' && at(lx, p + 2) == '\'') {
        t->kind = TK_USTRING;
        return scan_quoted(lx, p + 3, Q_STANDARD, t);
    }
    if (c == 'u' && next == '&' && at(lx, p + 2) == '"') {
        t->kind = TK_QIDENT;
        return scan_quoted_ident(lx, p + 3, t);
    }
    t->kind = TK_IDENT;
    for (p++; is_ident_cont(at(lx, p)); p++)
        ;
    return p;
}

/* An operator stops where a comment starts (a+--x is a + and a comment). */
static size_t scan_operator(const lexer *lx, size_t p)
{
    size_t start = p;

    for (; is_op_char(at(lx, p)); p++) {
        unsigned char c = at(lx, p), next = at(lx, p + 1);
        if (p > start && ((c == '-' && next == '-') || (c == '/' && next == '*')))
            break;
    }
    return p;
}

/* Sets t->kind and returns where the token at p ends. */
static size_t lex_dispatch(const lexer *lx, size_t p, token *t)
{
    unsigned char c = at(lx, p), next = at(lx, p + 1);

    if ((c == '-' && next == '-') || (c == '/' && next == '*')) {
        t->kind = TK_COMMENT;
        return c == '-' ? scan_line_comment(lx, p) : scan_block_comment(lx, p, t);
    }
    if (c == '\'') {
        t->kind = TK_STRING;
        return scan_quoted(lx, p + 1, Q_STANDARD, t);
    }
    if (c == '"') {
        t->kind = TK_QIDENT;
        return scan_quoted_ident(lx, p + 1, t);
    }
    if (c == '$')
        return scan_dollar(lx, p, t);
    if (is_digit(c) || (c == '.' && is_digit(next)))
        return scan_number(lx, p, t);
    if (is_ident_start(c))
        return scan_word(lx, p, t);
    if (is_op_char(c)) {
        t->kind = TK_OP;
        return scan_operator(lx, p);
    }
    t->kind = TK_PUNCT;
    return p + ((c == ':' && (next == ':' || next == '=')) || (c == '.' && next == '.') ? 2 : 1);
}

/* The next token; whitespace is skipped (a token that starts after the previous one ended had
 * whitespace before it). */
static void lex_next(lexer *lx, token *t)
{
    while (lx->pos < lx->n && is_space((unsigned char)lx->s[lx->pos]))
        lx->pos++;
    t->start = lx->pos;
    t->bad = false;
    t->backslash = false;
    if (lx->pos >= lx->n) {
        t->kind = TK_END;
        t->end = lx->pos;
        return;
    }
    t->end = lex_dispatch(lx, lx->pos, t);
    lx->pos = t->end;
}

static bool is_punct(const lexer *lx, const token *t, char c)
{
    return t->kind == TK_PUNCT && t->end - t->start == 1 && lx->s[t->start] == c;
}

/* Whether t is the unquoted word w (given in lower case); keywords are case-insensitive. */
static bool is_word(const lexer *lx, const token *t, const char *w)
{
    size_t n = t->end - t->start;

    if (t->kind != TK_IDENT)
        return false;
    for (size_t i = 0; i < n; i++)
        if (w[i] == '\0' || lower_ascii((unsigned char)lx->s[t->start + i]) != (unsigned char)w[i])
            return false;
    return w[n] == '\0';
}

/* ---- hashing ---- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv_byte(uint64_t h, unsigned char b)
{
    return (h ^ b) * FNV_PRIME;
}

/* ---- the pre-digest ---- */

static bool string_in_doubt(const lexer *lx, const token *t);

/* What the first word of a statement says about it. */
enum first_kind {
    FIRST_OTHER,
    FIRST_NAMED,      /* the next word is a statement, cursor or savepoint name */
    FIRST_SAVEPOINTS, /* a name may follow SAVEPOINT or TO */
    FIRST_DEALLOCATE, /* DEALLOCATE [PREPARE] name */
    FIRST_FETCH       /* FETCH/MOVE ... [FROM|IN] cursor */
};

typedef struct first_word {
    const char *word;
    enum first_kind kind;
    bool strip; /* every literal of such statements is an A_Const, which fingerprints ignore */
} first_word;

/* Statements whose literals libpg_query's fingerprint ignores. Others (CREATE ... WITH
 * (fillfactor=70), COPY 'file', COMMENT ... IS 'text', NOTIFY, EXPLAIN (FORMAT 'json'), FETCH 10)
 * keep literal values in their parse tree, so their pre-digest keeps the values too. */
/* clang-format off */
static const first_word first_words[] = {
    {"select", FIRST_OTHER, true},          {"insert", FIRST_OTHER, true},
    {"update", FIRST_OTHER, true},          {"delete", FIRST_OTHER, true},
    {"with", FIRST_OTHER, true},            {"values", FIRST_OTHER, true},
    {"table", FIRST_OTHER, true},           {"merge", FIRST_OTHER, true},
    {"set", FIRST_OTHER, true},             {"reset", FIRST_OTHER, true},
    {"show", FIRST_OTHER, true},            {"begin", FIRST_OTHER, true},
    {"start", FIRST_OTHER, true},           {"commit", FIRST_OTHER, true},
    {"end", FIRST_OTHER, true},             {"abort", FIRST_OTHER, true},
    {"rollback", FIRST_SAVEPOINTS, true},   {"savepoint", FIRST_SAVEPOINTS, true},
    {"release", FIRST_SAVEPOINTS, true},    {"execute", FIRST_NAMED, true},
    {"prepare", FIRST_NAMED, true},         {"declare", FIRST_NAMED, true},
    {"call", FIRST_OTHER, true},            {"lock", FIRST_OTHER, true},
    {"truncate", FIRST_OTHER, true},        {"close", FIRST_NAMED, false},
    {"deallocate", FIRST_DEALLOCATE, false}, {"fetch", FIRST_FETCH, false},
    {"move", FIRST_FETCH, false},
};
/* clang-format on */

enum mode { MODE_NEXT, MODE_STRIP, MODE_KEEP };
enum list_state { LIST_NONE, LIST_OPEN, LIST_ITEM, LIST_COMMA, LIST_ROW_END, LIST_ROW_NEXT };

typedef struct digest {
    const lexer *lx;
    uint64_t h;
    bool strip_all; /* every literal as a marker, whatever the statement (fallback ids) */
    enum mode mode; /* MODE_NEXT: the next significant token starts a statement */
    enum first_kind first;
    size_t index;       /* significant tokens seen in this statement */
    token prev1, prev2; /* the last two significant tokens */
    enum list_state list;
    bool rows; /* the list is VALUES (...), (...): collapsed as a whole */
    char list_close;
    uint64_t h_list;        /* the hash where the collapsed list's marker goes */
    size_t depth;           /* parentheses open in this statement */
    bool after_constructor; /* prev1 is the '[' of ARRAY[ building an array */
    bool query;             /* inside a SELECT nested in a statement that keeps values */
    size_t query_depth;
    bool values_matter; /* a literal where libpg_query's fingerprint may keep its value */
    bool values;        /* a literal anywhere, or a word fp_literals may take for a value */
} digest;

/* The code hashed before a token: a lower-case letter, digit or sign for a token hashed with
 * its bytes, a capital for a literal replaced by its marker. No code is another's prefix, so
 * two different token streams never hash the same bytes. */
static unsigned char kind_code(tok_kind k, bool marker)
{
    static const char raw[] = "-ciqop$j123456789";

    return marker && is_literal(k) ? (unsigned char)('A' + (k - TK_INT)) : (unsigned char)raw[k];
}

static void hash_code(digest *d, unsigned char code)
{
    d->h = fnv_byte(d->h, code);
}

/* A code, the length as a varint, then the bytes: no two token streams hash the same bytes.
 * The first fold bytes are case-folded (keywords, identifiers, the E of E'...'). */
static void hash_token(digest *d, unsigned char code, const token *t, size_t fold)
{
    const unsigned char *s = (const unsigned char *)d->lx->s + t->start;
    size_t n = t->end - t->start;
    uint64_t h = fnv_byte(d->h, code);
    size_t v = n;

    for (; v >= 0x80; v >>= 7)
        h = fnv_byte(h, (unsigned char)(v | 0x80));
    h = fnv_byte(h, (unsigned char)v);
    for (size_t i = 0; i < n; i++)
        h = fnv_byte(h, i < fold ? lower_ascii(s[i]) : s[i]);
    d->h = h;
}

/* How many leading bytes of a token PostgreSQL reads without regard to case. */
static size_t case_blind_prefix(const lexer *lx, const token *t)
{
    switch (t->kind) {
    case TK_IDENT:
        return SIZE_MAX;
    case TK_ESTRING:
    case TK_BSTRING:
    case TK_XSTRING:
    case TK_NSTRING:
    case TK_USTRING:
        return 1;
    case TK_QIDENT:
        return lx->s[t->start] != '"'; /* U&"..." */
    default:
        return 0;
    }
}

static void start_statement(digest *d, const token *t)
{
    d->first = FIRST_OTHER;
    d->mode = MODE_KEEP;
    if (is_punct(d->lx, t, '(')) /* (SELECT ...) UNION ... */
        d->mode = MODE_STRIP;
    for (size_t i = 0; t->kind == TK_IDENT && i < sizeof first_words / sizeof *first_words; i++) {
        if (is_word(d->lx, t, first_words[i].word)) {
            d->first = first_words[i].kind;
            d->mode = first_words[i].strip ? MODE_STRIP : MODE_KEEP;
            break;
        }
    }
    if (d->strip_all)
        d->mode = MODE_STRIP;
}

/* In a statement that keeps literal values, two places hold plain constants all the same:
 * a SELECT (COPY (SELECT ...) TO, CREATE VIEW ... AS SELECT, EXPLAIN SELECT) up to the
 * parenthesis that closes around it, and the literal right after DEFAULT in a column or
 * argument definition (not COPY's option "default", which follows '(' or ','). */
static bool strips_here(const digest *d)
{
    const lexer *lx = d->lx;

    if (d->mode == MODE_STRIP || d->query)
        return true;
    return is_word(lx, &d->prev1, "default") && !is_punct(lx, &d->prev2, '(') &&
           !is_punct(lx, &d->prev2, ',');
}

/* Whether the ARRAY just read (prev1) builds an array, as in = ANY(ARRAY[1, 2]): it follows a
 * bracket, a comma, an operator or a keyword that opens an expression. After a type name,
 * ARRAY[5] is an array bound instead (int ARRAY[5]), which takes one integer that fingerprints
 * keep. */
static bool array_constructor(const digest *d)
{
    static const char *const openers[] = {"select", "where", "and",  "or",     "not",
                                          "then",   "else",  "when", "return", "returning"};
    const lexer *lx = d->lx;
    const token *p = &d->prev2;

    if (!is_word(lx, &d->prev1, "array"))
        return false;
    if (p->kind == TK_OP || is_punct(lx, p, '(') || is_punct(lx, p, ',') || is_punct(lx, p, '['))
        return true;
    for (size_t i = 0; i < sizeof openers / sizeof *openers; i++)
        if (is_word(lx, p, openers[i]))
            return true;
    return false;
}

/* Whether a literal's value goes into the pre-digest. Outside the places where fingerprints
 * ignore constants (a COMMENT's text, a NOTIFY payload, a role's PASSWORD, FETCH's count),
 * libpg_query's fingerprint would keep the value; pgscope's shapes must not depend on values,
 * so the value is left out all the same and values_matter noted: such a statement's id comes
 * from its normalized text instead (see shape_compute). */
static bool keeps_value(digest *d, const token *t)
{
    const lexer *lx = d->lx;

    if (d->strip_all)
        return false;
    if (!strips_here(d))
        d->values_matter = true;
    if (t->kind == TK_USTRING || is_word(lx, &d->prev1, "uescape"))
        return true; /* U&'..' escapes are checked while parsing: the value decides validity */
    if (t->kind == TK_ESTRING && t->backslash)
        return true; /* E'\u12' or E'\xff' can be errors */
    if (!strips_here(d))
        return false;
    if (t->kind != TK_INT && t->kind != TK_NUM)
        return false;
    /* float(24) is real and float(25) double precision; current_time(3) keeps its 3; int[5]
     * and int ARRAY[5] keep their bound. ARRAY[1] and ARRAY[[1]] hold plain constants. */
    if (is_punct(lx, &d->prev1, '('))
        return is_word(lx, &d->prev2, "float") || is_word(lx, &d->prev2, "current_time") ||
               is_word(lx, &d->prev2, "current_timestamp") || is_word(lx, &d->prev2, "localtime") ||
               is_word(lx, &d->prev2, "localtimestamp");
    if (is_punct(lx, &d->prev1, '['))
        return !d->after_constructor && !is_punct(lx, &d->prev2, '[') &&
               !is_punct(lx, &d->prev2, ',');
    return false;
}

/* Where a float precision's value is left out of the pre-digest (a column definition), whether
 * it is valid still goes in: float(0), float(54) and float(1.5) are syntax errors, float(1) to
 * float(53) are not. 0 for any other literal or a valid precision, else a class code. */
static int float_precision_class(const digest *d, const token *t)
{
    const lexer *lx = d->lx;

    if (!is_punct(lx, &d->prev1, '(') || !is_word(lx, &d->prev2, "float"))
        return 0;
    if (t->kind != TK_INT)
        return 'n';
    long v = 0;
    for (size_t i = t->start; i < t->end && v <= 1000; i++)
        v = v * 10 + (lx->s[i] - '0');
    return v < 1 ? '<' : v > 53 ? '>' : 0;
}

/* Follows parentheses, and the extent of a SELECT inside a statement that keeps values. */
static void track_nesting(digest *d, const token *t)
{
    if (is_punct(d->lx, t, '(')) {
        d->depth++;
    } else if (is_punct(d->lx, t, ')') && d->depth > 0) {
        d->depth--;
        if (d->query && d->depth < d->query_depth)
            d->query = false;
    } else if (d->mode == MODE_KEEP && !d->query && is_word(d->lx, t, "select")) {
        d->query = true;
        d->query_depth = d->depth;
    }
}

/* A name the fingerprint ignores: "quoted", or unquoted with a digit so that it cannot be a
 * keyword (SAVEPOINT select is a syntax error, SAVEPOINT s1 is not). */
static bool looks_like_name(const lexer *lx, const token *t)
{
    if (t->kind == TK_QIDENT)
        return lx->s[t->start] == '"' && !t->bad && t->end - t->start > 2;
    if (t->kind != TK_IDENT)
        return false;
    for (size_t i = t->start; i < t->end; i++)
        if (is_digit((unsigned char)lx->s[i]))
            return true;
    return false;
}

/* Savepoint, cursor and prepared statement names: libpg_query leaves them out of fingerprints,
 * and Django, SQLAlchemy and psycopg2 make a new one for each transaction or cursor. */
static bool is_ignored_name(const digest *d, const token *t)
{
    const lexer *lx = d->lx;

    if (d->first == FIRST_OTHER || !looks_like_name(lx, t))
        return false;
    switch (d->first) {
    case FIRST_NAMED:
        return d->index == 1;
    case FIRST_SAVEPOINTS:
        return d->index == 1 || is_word(lx, &d->prev1, "savepoint") || is_word(lx, &d->prev1, "to");
    case FIRST_DEALLOCATE:
        return d->index == 1 || (d->index == 2 && is_word(lx, &d->prev1, "prepare"));
    case FIRST_FETCH:
        return d->index == 1 || is_word(lx, &d->prev1, "from") || is_word(lx, &d->prev1, "in");
    default:
        return false;
    }
}

/* Words that stand for constants in a list: fingerprints skip them as they skip literals. */
static bool is_constant_word(const lexer *lx, const token *t)
{
    return is_word(lx, t, "null") || is_word(lx, t, "true") || is_word(lx, t, "false") ||
           is_word(lx, t, "default");
}

/* The words fp_literals may take for values (see word_constant): true, false, null, LIMIT ALL,
 * a normal form and EXTRACT's field (the words that name them, to be safe). */
static bool may_be_value_word(const lexer *lx, const token *t)
{
    static const char *const words[] = {"true",    "false",     "null",       "all",
                                        "extract", "normalize", "normalized", NULL};

    if (t->kind != TK_IDENT)
        return false;
    for (int i = 0; words[i]; i++)
        if (is_word(lx, t, words[i]))
            return true;
    return false;
}

static void list_collapse(digest *d, unsigned char code)
{
    d->h = d->h_list;
    hash_code(d, code);
    d->list = LIST_NONE;
}

/* IN (1, 2, 3), ARRAY[1, 2] and VALUES (1, 'a'), (2, NULL) fingerprint the same whatever their
 * lengths and number of rows: a list of constants collapses into one marker. The hash runs on
 * as usual until the list proves whole, so giving up costs nothing. */
static void list_step(digest *d, const token *t, bool item)
{
    const lexer *lx = d->lx;

    switch (d->list) {
    case LIST_OPEN:
    case LIST_COMMA:
        d->list = item ? LIST_ITEM : LIST_NONE;
        break;
    case LIST_ITEM:
        if (is_punct(lx, t, ','))
            d->list = LIST_COMMA;
        else if (is_punct(lx, t, d->list_close) && d->rows)
            d->list = LIST_ROW_END;
        else if (is_punct(lx, t, d->list_close))
            list_collapse(d, 'L');
        else
            d->list = LIST_NONE;
        break;
    case LIST_ROW_END: /* a comma and another row, or the end of the rows */
        if (is_punct(lx, t, ','))
            d->list = LIST_ROW_NEXT;
        else
            list_collapse(d, 'V');
        break;
    case LIST_ROW_NEXT:
        d->list = is_punct(lx, t, '(') ? LIST_OPEN : LIST_NONE;
        break;
    default:
        break;
    }
}

/* Opens a list at t, whose hash started from before: a marker for IN ( and ARRAY[ replaces
 * what follows the bracket; one for VALUES replaces the rows, brackets included. */
static void list_open(digest *d, const token *t, uint64_t before)
{
    const lexer *lx = d->lx;

    if ((d->mode != MODE_STRIP && !d->query) || d->list != LIST_NONE)
        return;
    d->rows = false;
    d->h_list = d->h;
    if (is_punct(lx, t, '(') && is_word(lx, &d->prev1, "in")) {
        d->list_close = ')';
    } else if (is_punct(lx, t, '[') && array_constructor(d)) {
        d->list_close = ']';
    } else if (is_punct(lx, t, '(') && is_word(lx, &d->prev1, "values")) {
        d->list_close = ')';
        d->rows = true;
        d->h_list = before;
    } else {
        return;
    }
    d->list = LIST_OPEN;
}

/* libpg_query's parser, unlike PostgreSQL's, does not skip a comment where it looks ahead:
 * after NOT (NOT LIKE), NULLS (NULLS FIRST), WITH (WITH TIME ZONE), U&'' or U&"" (UESCAPE) and
 * UESCAPE. A comment there can make the text unparsable, so there it counts. */
static bool comment_counts(const digest *d)
{
    const lexer *lx = d->lx;
    const token *p = &d->prev1;

    return p->kind == TK_USTRING || (p->kind == TK_QIDENT && lx->s[p->start] != '"') ||
           is_word(lx, p, "not") || is_word(lx, p, "nulls") || is_word(lx, p, "with") ||
           is_word(lx, p, "uescape");
}

static void digest_token(digest *d, const token *t)
{
    if (t->kind == TK_COMMENT && !t->bad) {
        if (comment_counts(d))
            hash_code(d, '#');
        return;
    }
    if (d->mode == MODE_NEXT)
        start_statement(d, t);

    bool literal = is_literal(t->kind) && !t->bad;
    bool keep = literal && keeps_value(d, t);
    d->values = d->values || is_literal(t->kind) || may_be_value_word(d->lx, t);
    /* Ids from a normalized text (strip_all) ignore parameter numbers, as fingerprints do:
     * "IN ($2, $3)" then ends the same whatever the length of a list before it. */
    bool param = d->strip_all && t->kind == TK_PARAM && !t->bad;
    if (d->list != LIST_NONE)
        list_step(d, t, (literal && !keep) || param || is_constant_word(d->lx, t));
    uint64_t before = d->h;
    if (literal && string_in_doubt(d->lx, t))
        hash_code(d, '?'); /* its normalized text is cut there: keep it apart from others */
    if (t->bad)
        hash_code(d, (unsigned char)(kind_code(t->kind, true) | 0x80));
    else if (literal && !keep) {
        hash_code(d, kind_code(t->kind, true));
        if (float_precision_class(d, t))
            hash_code(d, (unsigned char)float_precision_class(d, t));
    } else if (param)
        hash_code(d, 'P');
    else if (is_ignored_name(d, t))
        hash_code(d, 'N');
    else
        hash_token(d, kind_code(t->kind, false), t, case_blind_prefix(d->lx, t));
    list_open(d, t, before);
    track_nesting(d, t);

    d->after_constructor = is_punct(d->lx, t, '[') && array_constructor(d);
    d->prev2 = d->prev1;
    d->prev1 = *t;
    d->index++;
    if (is_punct(d->lx, t, ';')) { /* the next statement decides for itself */
        d->mode = MODE_NEXT;
        d->index = 0;
        d->list = LIST_NONE;
        d->depth = 0;
        d->query = false;
    }
}

/* The hash of text's token stream; *values_matter (may be NULL) tells whether a literal stood
 * where libpg_query's fingerprint keeps values, *values (may be NULL) whether the text may hold
 * any value fp_literals finds (false: it finds none). */
static uint64_t digest_text(const char *text, size_t len, bool strip_all, bool *values_matter,
                            bool *values)
{
    lexer lx;
    token t;
    digest d;

    lex_init(&lx, text, len);
    memset(&d, 0, sizeof d);
    d.lx = &lx;
    d.h = FNV_OFFSET;
    d.strip_all = strip_all;
    d.mode = MODE_NEXT;
    for (lex_next(&lx, &t); t.kind != TK_END; lex_next(&lx, &t))
        digest_token(&d, &t);
    if (d.list == LIST_ROW_END) /* INSERT ... VALUES (1), (2) at the very end */
        list_collapse(&d, 'V');
    if (values_matter != NULL)
        *values_matter = d.values_matter;
    if (values != NULL)
        *values = d.values;
    return hash_mix64(d.h);
}

uint64_t fp_predigest(const char *text, size_t len)
{
    return digest_text(text, len, false, NULL, NULL);
}

/* Text libpg_query rejects: an id from the pre-digest with every literal stripped, so that all
 * variants of one broken statement share it, mixed with a constant that keeps it apart from
 * pre-digests used elsewhere. */
static uint64_t fallback_id(const char *text, size_t len)
{
    return hash_mix64(digest_text(text, len, true, NULL, NULL) ^ 0x5bd1e9955bd1e995ULL);
}

/* The id of a statement whose libpg_query fingerprint would depend on its values: a hash of
 * its normalized text's tokens (every constant a $n), which is the same for every variant of
 * the statement and so confirms no guess of a value. Spacing, comments, keyword case and
 * parameter numbers are left out as the pre-digest leaves them out, so that texts sharing a
 * pre-digest share this id too; the constant keeps it apart from the other kinds of id. */
static uint64_t cleaned_id(const char *normalized)
{
    return hash_mix64(digest_text(normalized, strlen(normalized), true, NULL, NULL) ^
                      0x8f14e45fceea167aULL);
}

/* ---- readable texts ---- */

/* Appends src[0..n) to out (holding *used of cap bytes); what does not fit is cut at a UTF-8
 * character boundary and false returned. */
static bool append_cut(char *out, size_t *used, size_t cap, const char *src, size_t n)
{
    size_t k = cap - *used;

    if (n <= k) {
        memcpy(out + *used, src, n);
        *used += n;
        return true;
    }
    while (k > 0 && ((unsigned char)src[k] & 0xC0) == 0x80)
        k--;
    memcpy(out + *used, src, k);
    *used += k;
    return false;
}

/* How tidy_text writes a constant it takes out of a text. */
enum mark_style {
    MARK_QUESTION, /* ?: the lexer's text of a statement libpg_query could not parse */
    MARK_PARAM     /* $n, numbered on from the text's own parameters, as normalize numbers */
};

/* Where tidy_text is in "SET name = value, ...". libpg_query's normalize leaves the values of
 * ALTER SYSTEM / ROLE / DATABASE / FUNCTION ... SET in the text, and there a value may be a
 * bare word (SET app.token = hunter2): a value all the same, taken out like a literal. */
enum set_step { SET_NONE, SET_WORD, SET_NAME, SET_DOT, SET_VALUE, SET_AFTER };

typedef struct tidier {
    lexer lx;
    char *out;
    size_t used, cap;
    enum mark_style style;
    uint32_t next;        /* the number of the next $n */
    bool statement_start; /* the next token begins a statement */
    bool settable;        /* a SET in this statement sets a setting (SET, ALTER, CREATE) */
    enum set_step set;
} tidier;

/* A '...' string that ends elsewhere when a backslash escapes a quote, as it does for a client
 * that turned standard_conforming_strings off: there 'a\' b' is one string, while libpg_query
 * (and this lexer) read 'a\' and then the word b. What follows it cannot be told from values. */
static bool string_in_doubt(const lexer *lx, const token *t)
{
    token other = *t;

    if (t->kind != TK_STRING || t->bad || !memchr(lx->s + t->start, '\\', t->end - t->start))
        return false;
    return scan_quoted(lx, t->start + 1, Q_ESCAPE, &other) != t->end;
}

static bool text_in_doubt(const char *text, size_t len)
{
    lexer lx;
    token t;

    lex_init(&lx, text, len);
    for (lex_next(&lx, &t); t.kind != TK_END; lex_next(&lx, &t))
        if (string_in_doubt(&lx, &t))
            return true;
    return false;
}

static bool is_setting_name(const token *t)
{
    return (t->kind == TK_IDENT || t->kind == TK_QIDENT) && !t->bad;
}

/* An operator made only of signs (before a number), or = with signs after it (=-5 lexes as
 * one operator here). */
static bool is_signs(const lexer *lx, const token *t, bool equals)
{
    size_t i = t->start;

    if (t->kind != TK_OP || (equals && lx->s[i++] != '='))
        return false;
    for (; i < t->end; i++)
        if (lx->s[i] != '-' && lx->s[i] != '+')
            return false;
    return true;
}

/* Whether the token after the current one is a '.' or '(': then a word is a name. */
static bool name_continues(const lexer *lx)
{
    lexer ahead = *lx;
    token t;

    do
        lex_next(&ahead, &t);
    while (t.kind == TK_COMMENT);
    return is_punct(&ahead, &t, '.') || is_punct(&ahead, &t, '(');
}

/* Follows "SET [LOCAL|SESSION] name[.name] {=|TO} value[, value...]" (not UPDATE's SET, whose
 * words are columns); true when t is a value written as a word rather than a literal. */
static bool set_value_word(tidier *td, const token *t)
{
    const lexer *lx = &td->lx;

    if (td->statement_start) {
        td->settable = is_word(lx, t, "set") || is_word(lx, t, "alter") || is_word(lx, t, "create");
        td->statement_start = false;
        td->set = SET_NONE;
    }
    if (is_word(lx, t, "update")) /* in a rule's actions or a function body */
        td->settable = false;
    switch (td->set) {
    case SET_WORD:
        if (!is_word(lx, t, "local") && !is_word(lx, t, "session"))
            td->set = is_setting_name(t) ? SET_NAME : SET_NONE;
        return false;
    case SET_NAME:
        if (is_punct(lx, t, '.'))
            td->set = SET_DOT;
        else if (is_signs(lx, t, true) || is_word(lx, t, "to"))
            td->set = SET_VALUE;
        else
            td->set = SET_NONE;
        return false;
    case SET_DOT:
        td->set = is_setting_name(t) ? SET_NAME : SET_NONE;
        return false;
    case SET_VALUE:
        if (is_signs(lx, t, false))
            return false;
        if (is_literal(t->kind)) {
            td->set = SET_AFTER;
            return false;
        }
        td->set = SET_NONE;
        if (!is_setting_name(t) || is_word(lx, t, "default") || name_continues(lx))
            return false;
        td->set = SET_AFTER;
        return true;
    case SET_AFTER:
        if (is_punct(lx, t, ',')) {
            td->set = SET_VALUE;
            return false;
        }
        break;
    default:
        break;
    }
    td->set = td->settable && is_word(lx, t, "set") ? SET_WORD : SET_NONE;
    return false;
}

/* The mark in place of a constant, whole or not at all. */
static bool put_mark(tidier *td)
{
    char mark[16] = "?";
    int n = 1;

    if (td->style == MARK_PARAM)
        n = snprintf(mark, sizeof(mark), "$%" PRIu32,
                     td->next < UINT32_MAX ? td->next++ : td->next);
    if ((size_t)n > td->cap - td->used)
        return false;
    memcpy(td->out + td->used, mark, (size_t)n);
    td->used += (size_t)n;
    return true;
}

/* The number of a $n token, saturated. */
static uint32_t param_number(const lexer *lx, const token *t)
{
    uint64_t v = 0;

    for (size_t i = t->start + 1; i < t->end && is_digit((unsigned char)lx->s[i]); i++) {
        v = v * 10 + (uint64_t)(lx->s[i] - '0');
        if (v >= UINT32_MAX)
            return UINT32_MAX;
    }
    return (uint32_t)v;
}

/* For $n marks: the first free parameter number, and how long the copy can grow (a mark is at
 * most 11 bytes where its token had at least 1, and may get a space on each side). */
static size_t tidy_bound(const lexer *text, uint32_t *next)
{
    lexer lx = *text;
    token t;
    size_t marks = 0;
    uint32_t top = 0;

    for (lex_next(&lx, &t); t.kind != TK_END; lex_next(&lx, &t)) {
        if (t.kind == TK_PARAM && param_number(&lx, &t) > top)
            top = param_number(&lx, &t);
        marks += is_literal(t.kind) || t.kind == TK_JUNK || is_setting_name(&t);
    }
    *next = top < UINT32_MAX ? top + 1 : top;
    return lx.n + 12 * marks;
}

/* A copy of text without comments, each run of whitespace and comments as one space, and every
 * constant (literals, and the words that are values of a SET) marked in the given style; at
 * most cap bytes. A string whose end is in doubt is marked with all that follows it. *words
 * (may be NULL) is set when a value that is not a literal was marked: a SET value written as a
 * word. NULL when out of memory. */
static char *tidy_text(const char *text, size_t len, enum mark_style style, size_t cap, bool *words)
{
    tidier td;
    token t;
    size_t last = 0;
    bool space = false, marked = false;

    memset(&td, 0, sizeof(td));
    lex_init(&td.lx, text, len);
    td.style = style;
    td.next = 1;
    td.statement_start = true;
    size_t bound = style == MARK_PARAM ? tidy_bound(&td.lx, &td.next) : td.lx.n;
    td.cap = bound < cap ? bound : cap;
    td.out = malloc(td.cap + 1);
    if (td.out == NULL)
        return NULL;
    for (lex_next(&td.lx, &t); t.kind != TK_END; lex_next(&td.lx, &t)) {
        if (t.start > last || t.kind == TK_COMMENT)
            space = td.used > 0;
        last = t.end;
        if (t.kind == TK_COMMENT)
            continue;
        bool word = set_value_word(&td, &t), doubt = string_in_doubt(&td.lx, &t);
        bool mark = word || doubt || is_literal(t.kind) || t.kind == TK_JUNK;
        if (word && words != NULL)
            *words = true;
        /* A mark never touches a word: TO'x' is TO $2, not the identifier to$2 (nor 'x'AS
         * the junk $1AS), so that the text reads as the statement did, however it was spaced. */
        if (mark ? td.used > 0 && is_ident_cont((unsigned char)td.out[td.used - 1])
                 : marked && is_ident_cont((unsigned char)td.lx.s[t.start]))
            space = true;
        if (space && !append_cut(td.out, &td.used, td.cap, " ", 1))
            break;
        if (mark ? !put_mark(&td)
                 : !append_cut(td.out, &td.used, td.cap, td.lx.s + t.start, t.end - t.start))
            break;
        if (doubt)
            break;
        space = false;
        marked = mark;
        td.statement_start = is_punct(&td.lx, &t, ';');
    }
    td.out[td.used] = '\0';
    char *fit = realloc(td.out, td.used + 1); /* cached for as long as the shape is */
    return fit ? fit : td.out;
}

/* ---- splitting ---- */

/* What splitting needs to know about the statement being read: semicolons inside parentheses
 * (CREATE RULE ... DO (a; b)) or inside the BEGIN ... END of a CREATE FUNCTION/PROCEDURE body
 * (BEGIN ATOMIC) do not end it. The function heuristic is psql's. */
typedef struct split_state {
    size_t parens, begins, words;
    char first[4]; /* first letters of create/or/replace/function/procedure among words 1-4 */
} split_state;

static bool defines_routine(const split_state *st)
{
    const char *f = st->first;

    return f[0] == 'c' && (f[1] == 'f' || f[1] == 'p' ||
                           (f[1] == 'o' && f[2] == 'r' && (f[3] == 'f' || f[3] == 'p')));
}

static void split_track(split_state *st, const lexer *lx, const token *t)
{
    static const char *const heads[] = {"create", "or", "replace", "function", "procedure"};

    if (is_punct(lx, t, '('))
        st->parens++;
    else if (is_punct(lx, t, ')') && st->parens > 0)
        st->parens--;
    if (t->kind != TK_IDENT)
        return;
    for (size_t i = 0; st->words < 4 && i < sizeof heads / sizeof *heads; i++)
        if (is_word(lx, t, heads[i]))
            st->first[st->words] = heads[i][0];
    st->words++;
    if (!defines_routine(st) || st->parens > 0)
        return;
    if (is_word(lx, t, "begin") || (st->begins > 0 && is_word(lx, t, "case")))
        st->begins++; /* CASE ends with END too */
    else if (is_word(lx, t, "end") && st->begins > 0)
        st->begins--;
}

/* Records one statement [start, end) with surrounding whitespace trimmed. */
static void split_emit(const lexer *lx, size_t start, size_t end, fp_span *spans, int max,
                       int *count)
{
    while (start < end && is_space((unsigned char)lx->s[start]))
        start++;
    while (end > start && is_space((unsigned char)lx->s[end - 1]))
        end--;
    if (*count < max && spans != NULL) {
        spans[*count].offset = (uint32_t)start;
        spans[*count].len = (uint32_t)(end - start);
    }
    if (*count < INT_MAX)
        (*count)++;
}

int fp_split(const char *text, size_t len, fp_span *spans, int max)
{
    lexer lx;
    token t;
    split_state st;
    size_t start = 0;
    bool content = false;
    int count = 0;

    lex_init(&lx, text, len > UINT32_MAX ? UINT32_MAX : len);
    memset(&st, 0, sizeof st);
    for (lex_next(&lx, &t); t.kind != TK_END; lex_next(&lx, &t)) {
        if (t.kind == TK_COMMENT)
            continue;
        if (is_punct(&lx, &t, ';') && st.parens == 0 && st.begins == 0) {
            if (content)
                split_emit(&lx, start, t.start, spans, max, &count);
            start = t.end;
            content = false;
            memset(&st, 0, sizeof st);
            continue;
        }
        content = true;
        split_track(&st, &lx, &t);
    }
    if (content)
        split_emit(&lx, start, lx.n, spans, max, &count);
    return count;
}

/* ---- sqlcommenter tags ---- */

typedef struct tag {
    const char *key, *value; /* decoded, NUL-terminated, in the caller's scratch buffer */
} tag;

static bool is_key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '-' || c == '.' || c == '~' || c == '%';
}

static int hex_value(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    c = lower_ascii(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* URL-decodes src[0..n) into dst (which may be src: the result is never longer) and
 * NUL-terminates it; a % not followed by two hex digits stays as it is. Returns the byte after
 * the NUL. */
static char *url_decode(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = i + 2 < n ? hex_value((unsigned char)src[i + 1]) : -1;
        int lo = i + 2 < n ? hex_value((unsigned char)src[i + 2]) : -1;
        if (src[i] == '%' && hi >= 0 && lo >= 0) {
            *dst++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *dst++ = src[i];
        }
    }
    *dst = '\0';
    return dst + 1;
}

/* A value is URL-encoded, then its quotes escaped with backslashes: undo both, in that order. */
static char *value_decode(char *dst, const char *src, size_t n)
{
    size_t m = 0;

    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\\' && i + 1 < n)
            i++;
        dst[m++] = src[i];
    }
    return url_decode(dst, dst, m);
}

static size_t skip_blanks(const char *s, size_t p, size_t n)
{
    while (p < n && is_space((unsigned char)s[p]))
        p++;
    return p;
}

/* Reads one key='value' at *pos; false if the text there has another form. */
static bool parse_pair(const char *s, size_t n, size_t *pos, size_t range[4])
{
    size_t p = *pos;

    range[0] = p;
    while (p < n && is_key_char((unsigned char)s[p]))
        p++;
    range[1] = p - range[0];
    p = skip_blanks(s, p, n);
    if (range[1] == 0 || p >= n || s[p] != '=')
        return false;
    p = skip_blanks(s, p + 1, n);
    if (p >= n || s[p] != '\'')
        return false;
    range[2] = ++p;
    while (p < n && s[p] != '\'')
        p += s[p] == '\\' && p + 1 < n ? 2 : 1;
    if (p >= n)
        return false;
    range[3] = p - range[2];
    p = skip_blanks(s, p + 1, n);
    if (p < n && s[p] != ',')
        return false;
    *pos = p < n ? skip_blanks(s, p + 1, n) : p;
    return true;
}

/* The pairs of a comment body made only of key='value' pairs separated by commas, decoded into
 * buf (2 * n + 2 bytes); 0 if the body has another form. Pairs past FP_TAGS_MAX are ignored. */
static int parse_tags(const char *s, size_t n, char *buf, tag *tags)
{
    size_t p = skip_blanks(s, 0, n), r[4];
    int count = 0;

    while (p < n) {
        if (!parse_pair(s, n, &p, r))
            return 0;
        if (count == FP_TAGS_MAX)
            continue;
        tags[count].key = buf;
        buf = url_decode(buf, s + r[0], r[1]);
        tags[count].value = buf;
        buf = value_decode(buf, s + r[2], r[3]);
        count++;
    }
    return count;
}

/* Keys sorted, stable so that the first of several equal keys comes first. */
static void sort_tags(tag *tags, int n)
{
    for (int i = 1; i < n; i++) {
        tag x = tags[i];
        int j = i;
        for (; j > 0 && strcmp(tags[j - 1].key, x.key) > 0; j--)
            tags[j] = tags[j - 1];
        tags[j] = x;
    }
}

/* Writes s with the bytes that would make "k=v,k=v" ambiguous (, = %) and control characters
 * percent-encoded again. */
static char *put_encoded(char *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ',' || c == '=' || c == '%' || c < 0x20 || c == 0x7f) {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        } else {
            *out++ = (char)c;
        }
    }
    return out;
}

/* The canonical string of the pairs in one comment body into out; the number of distinct keys,
 * or 0 if the body is not a tag list (or memory ran out). */
static int tags_from_comment(const char *body, size_t n, char *out, size_t cap)
{
    tag tags[FP_TAGS_MAX];
    char *buf = malloc(2 * n + 2), *all = malloc(6 * n + 2 * FP_TAGS_MAX + 1);
    int count = 0;

    if (buf != NULL && all != NULL)
        count = parse_tags(body, n, buf, tags);
    if (count > 0) {
        char *w = all;
        int kept = 0;
        sort_tags(tags, count);
        for (int i = 0; i < count; i++) {
            if (i > 0 && strcmp(tags[i - 1].key, tags[i].key) == 0)
                continue;
            if (kept++ > 0)
                *w++ = ',';
            w = put_encoded(w, tags[i].key);
            *w++ = '=';
            w = put_encoded(w, tags[i].value);
        }
        size_t used = 0;
        if (cap > 0) {
            append_cut(out, &used, cap - 1, all, (size_t)(w - all));
            out[used] = '\0';
        }
        count = kept;
    }
    free(buf);
    free(all);
    return count;
}

int fp_tags(const char *text, size_t len, char *out, size_t cap)
{
    lexer lx;
    token t;

    if (cap > 0)
        out[0] = '\0';
    if (memmem(text, len, "/*", 2) == NULL)
        return 0; /* no comment, so no tags: most statements, spared the lexer's pass */
    lex_init(&lx, text, len);
    for (lex_next(&lx, &t); t.kind != TK_END; lex_next(&lx, &t)) {
        if (t.kind != TK_COMMENT || t.bad || lx.s[t.start] != '/')
            continue;
        int n = tags_from_comment(lx.s + t.start + 2, t.end - t.start - 4, out, cap);
        if (n > 0)
            return n;
    }
    return 0;
}

void fp_hex(uint64_t id, char out[17])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 15; i >= 0; i--) {
        out[i] = hex[id & 15];
        id >>= 4;
    }
    out[16] = '\0';
}

/* ---- the cache ---- */

#define FP_NONE UINT32_MAX
#define FP_MAX_ENTRIES (1U << 28)
/* Normalized texts the cache may hold, per entry it may hold on average: a cache of 50,000
 * shapes holds at most 32 MB of text, however long the statements (16 kB each at most). */
#define FP_TEXT_PER_ENTRY 640
#define FP_TEXT_MIN (1U << 20)

typedef struct fp_entry {
    uint64_t key; /* the pre-digest */
    uint64_t id;
    char *normalized;      /* owned; NULL if memory ran out */
    uint32_t newer, older; /* neighbours in recency order */
    bool fallback;
} fp_entry;

/* A text seen before, byte for byte, with its pre-digest: a driver's bound statement comes back
 * with the same text at every execution, and comparing bytes costs a fraction of lexing them. */
#define FP_EXACT_SLOTS 64
#define FP_EXACT_MAX 2048 /* longer texts are digested every time */

typedef struct exact_text {
    char *text; /* NULL: empty slot */
    uint32_t len;
    uint64_t hash, key;
    bool values_matter, values;
} exact_text;

struct fp_cache {
    fp_entry *entries; /* n_entries used of cap_entries, grown up to max_entries */
    uint32_t n_entries, cap_entries, max_entries;
    uint32_t free_list;             /* entries emptied for want of text room, through older */
    size_t text_bytes, text_budget; /* normalized texts held, and at most */
    uint32_t *slots;                /* open addressing by key: entry index + 1, 0 when empty */
    size_t mask;
    uint32_t newest, oldest;
    char *scratch; /* a NUL-terminated copy of the text for libpg_query */
    size_t scratch_cap;
    char *loose; /* the text of a result that could not be cached, freed on the next call */
    exact_text exact[FP_EXACT_SLOTS];
    fp_counters counters;
};

fp_cache *fp_cache_new(size_t max_entries)
{
    fp_cache *c = calloc(1, sizeof *c);
    size_t slots = 16;

    if (c == NULL)
        return NULL;
    if (max_entries < 1)
        max_entries = 1;
    c->max_entries = max_entries > FP_MAX_ENTRIES ? FP_MAX_ENTRIES : (uint32_t)max_entries;
    while (slots < 2 * (size_t)c->max_entries) /* at most half full: probes stay short */
        slots *= 2;
    c->slots = calloc(slots, sizeof *c->slots);
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    c->mask = slots - 1;
    c->newest = c->oldest = c->free_list = FP_NONE;
    c->text_budget = (size_t)c->max_entries * FP_TEXT_PER_ENTRY;
    if (c->text_budget < FP_TEXT_MIN)
        c->text_budget = FP_TEXT_MIN;
    return c;
}

void fp_cache_free(fp_cache *c)
{
    if (c == NULL)
        return;
    for (uint32_t i = 0; i < c->n_entries; i++)
        free(c->entries[i].normalized); /* NULL in emptied entries */
    free(c->entries);
    free(c->slots);
    free(c->scratch);
    free(c->loose);
    for (int i = 0; i < FP_EXACT_SLOTS; i++)
        free(c->exact[i].text);
    free(c);
}

void fp_get_counters(const fp_cache *c, fp_counters *out)
{
    *out = c->counters;
}

static uint32_t cache_find(const fp_cache *c, uint64_t key)
{
    for (size_t s = key & c->mask;; s = (s + 1) & c->mask) {
        uint32_t v = c->slots[s];
        if (v == 0)
            return FP_NONE;
        if (c->entries[v - 1].key == key)
            return v - 1;
    }
}

static void slots_add(fp_cache *c, uint32_t index)
{
    size_t s = c->entries[index].key & c->mask;

    while (c->slots[s] != 0)
        s = (s + 1) & c->mask;
    c->slots[s] = index + 1;
}

/* Linear probing without tombstones: later members of the probe run move back into the hole. */
static void slots_remove(fp_cache *c, uint32_t index)
{
    size_t i = c->entries[index].key & c->mask;

    while (c->slots[i] != index + 1)
        i = (i + 1) & c->mask;
    for (size_t j = (i + 1) & c->mask; c->slots[j] != 0; j = (j + 1) & c->mask) {
        size_t home = c->entries[c->slots[j] - 1].key & c->mask;
        if (((j - home) & c->mask) >= ((j - i) & c->mask)) {
            c->slots[i] = c->slots[j];
            i = j;
        }
    }
    c->slots[i] = 0;
}

static void lru_unlink(fp_cache *c, uint32_t i)
{
    fp_entry *e = &c->entries[i];

    if (e->newer != FP_NONE)
        c->entries[e->newer].older = e->older;
    else
        c->newest = e->older;
    if (e->older != FP_NONE)
        c->entries[e->older].newer = e->newer;
    else
        c->oldest = e->newer;
}

static void lru_push(fp_cache *c, uint32_t i)
{
    fp_entry *e = &c->entries[i];

    e->newer = FP_NONE;
    e->older = c->newest;
    if (c->newest != FP_NONE)
        c->entries[c->newest].newer = i;
    c->newest = i;
    if (c->oldest == FP_NONE)
        c->oldest = i;
}

static size_t text_size(const fp_entry *e)
{
    return e->normalized != NULL ? strlen(e->normalized) + 1 : 0;
}

/* Takes the least recently used entry out of the index and the recency list, and frees its
 * text; returns its index. */
static uint32_t evict_oldest(fp_cache *c)
{
    uint32_t victim = c->oldest;

    slots_remove(c, victim);
    lru_unlink(c, victim);
    c->text_bytes -= text_size(&c->entries[victim]);
    free(c->entries[victim].normalized);
    c->entries[victim].normalized = NULL;
    c->counters.evictions++;
    return victim;
}

/* Long texts fill the text budget before the cache is full: the least recently used entries
 * make room, and their places wait on the free list. keep is never evicted. */
static void trim_texts(fp_cache *c, uint32_t keep)
{
    while (c->text_bytes > c->text_budget && c->oldest != FP_NONE && c->oldest != keep) {
        uint32_t i = evict_oldest(c);
        c->entries[i].older = c->free_list;
        c->free_list = i;
    }
}

/* A free entry: one emptied earlier, a new one while there is room, else the least recently
 * used one, emptied. FP_NONE only if there is neither memory nor an entry to reuse. */
static uint32_t cache_slot(fp_cache *c)
{
    if (c->free_list != FP_NONE) {
        uint32_t i = c->free_list;
        c->free_list = c->entries[i].older;
        return i;
    }
    if (c->n_entries == c->cap_entries && c->cap_entries < c->max_entries) {
        uint32_t cap = c->cap_entries ? c->cap_entries * 2 : 64;
        if (cap > c->max_entries)
            cap = c->max_entries;
        fp_entry *grown = realloc(c->entries, cap * sizeof *grown);
        if (grown != NULL) {
            c->entries = grown;
            c->cap_entries = cap;
        }
    }
    if (c->n_entries < c->cap_entries)
        return c->n_entries++;
    return c->oldest == FP_NONE ? FP_NONE : evict_oldest(c);
}

/* libpg_query wants a C string; the text need not be one. NULL when out of memory. */
static const char *scratch_copy(fp_cache *c, const char *text, size_t len)
{
    lexer lx;

    lex_init(&lx, text, len); /* stop at a NUL, as the lexer does */
    if (lx.n + 1 > c->scratch_cap) {
        char *grown = realloc(c->scratch, lx.n + 1);
        if (grown == NULL)
            return NULL;
        c->scratch = grown;
        c->scratch_cap = lx.n + 1;
    }
    memcpy(c->scratch, lx.s, lx.n);
    c->scratch[lx.n] = '\0';
    return c->scratch;
}

/* pg_query_normalize's text (constants as $n), tidied; the lexer's text if that fails. Normalize
 * replaces only the constants of some statements (a NOTIFY payload, a COMMENT, a CREATE TABLE's
 * DEFAULT, EXECUTE's arguments stay): tidying marks the ones it left, numbered on. A text with
 * a string whose end is in doubt gets the lexer's text, cut there: libpg_query may have read
 * part of a value as words. *cleaned is set when a value that is not a literal was taken out
 * (the literals' places the pre-digest knows), or when normalize failed. A text in doubt keeps
 * libpg_query's fingerprint, which reads it whole: an id from its cut text would be shared by
 * statements that differ after the cut, and ids key what the guard let replay. */
static char *normalized_text(const char *sql, bool *cleaned)
{
    size_t len = strlen(sql);

    if (text_in_doubt(sql, len))
        return tidy_text(sql, len, MARK_QUESTION, FP_FALLBACK_MAX, cleaned);
    PgQueryNormalizeResult nr = pg_query_normalize(sql);
    char *out;

    if (nr.error == NULL && nr.normalized_query != NULL)
        out = tidy_text(nr.normalized_query, strlen(nr.normalized_query), MARK_PARAM,
                        FP_NORMALIZED_MAX, cleaned);
    else
        out = tidy_text(sql, len, MARK_QUESTION, FP_FALLBACK_MAX, NULL);
    if (nr.error != NULL || nr.normalized_query == NULL)
        *cleaned = true;
    pg_query_free_normalize_result(nr);
    return out;
}

/* The shape of a text the cache has not seen: one libpg_query parse, or a fallback. The id is
 * libpg_query's fingerprint unless it could depend on a value: when a literal stood where the
 * fingerprint keeps values (values_matter, from the pre-digest: elsewhere the fingerprint
 * ignores them, which the pre-digest's own guarantee rests on) or a SET value written as a word
 * was taken out, it is the cleaned text's id. Both depend on where values stand, never on what
 * they are, so texts sharing a pre-digest share the id. */
static void shape_compute(fp_cache *c, const char *text, size_t len, bool values_matter,
                          fp_entry *e)
{
    const char *sql = scratch_copy(c, text, len);

    e->normalized = NULL;
    if (sql != NULL) {
        PgQueryFingerprintResult fr = pg_query_fingerprint(sql);
        bool ok = fr.error == NULL, cleaned = false;
        c->counters.parses++;
        e->id = fr.fingerprint;
        pg_query_free_fingerprint_result(fr);
        if (ok) {
            e->fallback = false;
            e->normalized = normalized_text(sql, &cleaned);
            if (values_matter || cleaned) /* out of memory: the literals stripped from sql */
                e->id = cleaned_id(e->normalized != NULL ? e->normalized : sql);
            return;
        }
    }
    e->id = fallback_id(text, len);
    e->fallback = true;
    e->normalized = tidy_text(text, len, MARK_QUESTION, FP_FALLBACK_MAX, NULL);
    c->counters.fallbacks++;
}

static void result_from(const fp_entry *e, bool values, fp_result *out)
{
    out->id = e->id;
    out->normalized = e->normalized != NULL ? e->normalized : "";
    out->fallback = e->fallback;
    out->values = values;
}

/* A hash of text's bytes, for the exact-text slots (a match is confirmed byte for byte). */
static uint64_t bytes_hash(const char *s, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;

    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s, n);
    return hash_mix64(h ^ w);
}

/* The pre-digest of text: from its exact-text slot when the same bytes were digested before.
 * A text with no values takes the slot (it is a bound statement, back at every execution); one
 * with values only an empty slot (its next sighting may differ in every value). *values_matter
 * and *values as digest_text sets them. */
static uint64_t text_key(fp_cache *c, const char *text, size_t len, bool *values_matter,
                         bool *values)
{
    if (len > FP_EXACT_MAX)
        return digest_text(text, len, false, values_matter, values);
    uint64_t h = bytes_hash(text, len);
    exact_text *x = &c->exact[h % FP_EXACT_SLOTS];
    if (x->text && x->hash == h && x->len == len && memcmp(x->text, text, len) == 0) {
        c->counters.exact_hits++;
        *values_matter = x->values_matter;
        *values = x->values;
        return x->key;
    }
    uint64_t key = digest_text(text, len, false, values_matter, values);
    if (*values && x->text)
        return key;
    char *copy = realloc(x->text, len ? len : 1);
    if (copy) {
        memcpy(copy, text, len);
        *x = (exact_text){copy, (uint32_t)len, h, key, *values_matter, *values};
    }
    return key;
}

void fp_statement(fp_cache *c, const char *text, size_t len, fp_result *out)
{
    bool values_matter, values;
    uint64_t key = text_key(c, text, len, &values_matter, &values);
    uint32_t i = cache_find(c, key);
    fp_entry fresh;

    free(c->loose);
    c->loose = NULL;
    c->counters.lookups++;
    if (i != FP_NONE) {
        c->counters.hits++;
        lru_unlink(c, i);
        lru_push(c, i);
        result_from(&c->entries[i], values, out);
        return;
    }
    shape_compute(c, text, len, values_matter, &fresh);
    fresh.key = key;
    i = cache_slot(c);
    if (i == FP_NONE) { /* no memory for the cache: answer anyway */
        c->loose = fresh.normalized;
        result_from(&fresh, values, out);
        return;
    }
    c->entries[i] = fresh;
    slots_add(c, i);
    lru_push(c, i);
    c->text_bytes += text_size(&fresh);
    trim_texts(c, i);
    result_from(&c->entries[i], values, out);
}

/* ---- literal values ----
 *
 * fp_literals numbers literals as libpg_query's normalize does: it walks the raw parse tree, so a
 * SELECT's constants come in the order target list, FROM, WHERE, GROUP BY, ORDER BY, HAVING,
 * WINDOW, OFFSET, LIMIT, locking, WITH, then the operands of a set operation. The text is read
 * into tokens and walked clause by clause in that order, without parsing it. */

#define LIT_MAX_NESTING 64 /* subqueries walked in tree order; deeper ones in text order */
#define LIT_MAX_SEGMENTS 24

#define LIT_WORD_MAX 24 /* longest keyword compared, with its NUL */

typedef struct ltok {
    token t;
    char word[LIT_WORD_MAX]; /* an unquoted identifier in lower case; "" if other or longer */
    uint32_t match;          /* of a ( or [: the index of its closing bracket (or of the end) */
    bool lit;                /* one of the constants normalize numbers */
    bool negative; /* a number with a unary minus before it, which the constant includes */
    bool done;     /* already emitted */
    char esc;      /* the escape character of a U&'' string */
} ltok;

typedef struct lits {
    lexer lx;
    ltok *v;
    uint32_t n, cap;
    uint32_t *order; /* token indices in numbering order */
    uint32_t n_order;
} lits;

static bool lit_push(lits *L, const token *t)
{
    if (L->n == L->cap) {
        uint32_t cap = L->cap ? L->cap * 2 : 64;
        ltok *grown = realloc(L->v, cap * sizeof *grown);
        if (grown == NULL)
            return false;
        L->v = grown;
        L->cap = cap;
    }
    memset(&L->v[L->n], 0, sizeof *L->v);
    L->v[L->n].t = *t;
    if (t->kind == TK_IDENT && t->end - t->start < LIT_WORD_MAX) /* keywords are compared often */
        for (size_t i = 0; i < t->end - t->start; i++)
            L->v[L->n].word[i] = (char)lower_ascii((unsigned char)L->lx.s[t->start + i]);
    L->v[L->n].match = L->n;
    L->v[L->n].esc = '\\';
    L->n++;
    return true;
}

/* PostgreSQL cuts trailing + and - off an operator unless it holds one of ~!@#^&|`?%, so that
 * =-5 is = and -5; each cut character is then an operator of its own. */
static bool lit_push_operator(lits *L, const token *t)
{
    const char *s = L->lx.s + t->start;
    size_t n = t->end - t->start, keep = n;
    token one = *t;

    if (n > 1 && (s[n - 1] == '+' || s[n - 1] == '-')) {
        bool qualifies = false;
        for (size_t i = 0; i + 1 < n; i++)
            qualifies |= strchr("~!@#^&|`?%", s[i]) != NULL;
        while (!qualifies && keep > 1 && (s[keep - 1] == '+' || s[keep - 1] == '-'))
            keep--;
    }
    one.end = t->start + keep;
    if (!lit_push(L, &one))
        return false;
    for (size_t i = keep; i < n; i++) {
        one.start = t->start + i;
        one.end = one.start + 1;
        if (!lit_push(L, &one))
            return false;
    }
    return true;
}

/* Reads the tokens (comments left out) and pairs the brackets. */
static bool lit_lex(lits *L, const char *text, size_t len)
{
    token t;

    lex_init(&L->lx, text, len > UINT32_MAX ? UINT32_MAX : len);
    for (lex_next(&L->lx, &t); t.kind != TK_END; lex_next(&L->lx, &t)) {
        if (t.kind == TK_COMMENT)
            continue;
        if (!(t.kind == TK_OP ? lit_push_operator(L, &t) : lit_push(L, &t)))
            return false;
    }
    uint32_t *stack = malloc((L->n + 1) * sizeof *stack), depth = 0;
    if (stack == NULL)
        return false;
    for (uint32_t i = 0; i < L->n; i++) {
        const token *k = &L->v[i].t;
        if (is_punct(&L->lx, k, '(') || is_punct(&L->lx, k, '[')) {
            L->v[i].match = L->n; /* until its bracket closes */
            stack[depth++] = i;
        } else if ((is_punct(&L->lx, k, ')') || is_punct(&L->lx, k, ']')) && depth > 0) {
            L->v[stack[--depth]].match = i;
        }
    }
    free(stack);
    return true;
}

static bool lw(const lits *L, uint32_t i, const char *w)
{
    return i < L->n && L->v[i].word[0] == w[0] && strcmp(L->v[i].word, w) == 0;
}

static bool lp(const lits *L, uint32_t i, char c)
{
    return i < L->n && is_punct(&L->lx, &L->v[i].t, c);
}

static bool lop(const lits *L, uint32_t i, const char *op)
{
    const token *t = i < L->n ? &L->v[i].t : NULL;

    return t != NULL && (t->kind == TK_OP || t->kind == TK_PUNCT) &&
           t->end - t->start == strlen(op) && memcmp(L->lx.s + t->start, op, strlen(op)) == 0;
}

static bool lw_any(const lits *L, uint32_t i, const char *const *words)
{
    if (i >= L->n || L->v[i].word[0] == '\0')
        return false;
    for (; *words != NULL; words++)
        if (lw(L, i, *words))
            return true;
    return false;
}

/* The index just after the bracket that i opens (i + 1 for any other token). */
static uint32_t lit_skip(const lits *L, uint32_t i)
{
    if (lp(L, i, '(') || lp(L, i, '['))
        return L->v[i].match < L->n ? L->v[i].match + 1 : L->n;
    return i + 1;
}

/* Whether the - at i is a sign rather than a subtraction: nothing that ends an operand comes
 * before it. */
static bool unary_minus(const lits *L, uint32_t i, uint32_t lo)
{
    static const char *const openers[] = {
        "select", "where",   "and",     "or",        "not",    "then",     "else",
        "when",   "case",    "return",  "returning", "limit",  "offset",   "having",
        "on",     "between", "like",    "ilike",     "by",     "distinct", "all",
        "any",    "some",    "values",  "set",       "escape", "from",     "for",
        "using",  "to",      "default", "placing",   NULL};
    const token *p;

    if (!lop(L, i, "-"))
        return false;
    if (i == lo)
        return true;
    p = &L->v[i - 1].t;
    if (p->kind == TK_OP)
        return true;
    if (p->kind == TK_PUNCT)
        return !lp(L, i - 1, ')') && !lp(L, i - 1, ']');
    return lw_any(L, i - 1, openers);
}

/* Words the grammar turns into constants: TRUE, FALSE and NULL (not after IS), LIMIT ALL, the
 * field of EXTRACT and the form of NORMALIZE. */
static bool word_constant(const lits *L, uint32_t i)
{
    static const char *const forms[] = {"nfc", "nfd", "nfkc", "nfkd", NULL};
    /* i - 1 and i - 2 wrap around at the start: lw is false there */
    bool after_is = lw(L, i - 1, "is") || (lw(L, i - 1, "not") && lw(L, i - 2, "is"));

    if ((lw(L, i, "true") || lw(L, i, "false") || lw(L, i, "null")) && !after_is)
        return true;
    if (lw(L, i, "all") && lw(L, i - 1, "limit"))
        return true;
    if ((L->v[i].t.kind == TK_IDENT || L->v[i].t.kind == TK_QIDENT) && i >= 2 &&
        lp(L, i - 1, '(') && lw(L, i - 2, "extract") && lw(L, i + 1, "from"))
        return true;
    if (lw_any(L, i, forms))
        return lw(L, i + 1, "normalized") ||
               (lp(L, i - 1, ',') && lp(L, i + 1, ')') && i >= 4 && lw(L, i - 4, "normalize"));
    return false;
}

/* Marks the constants, folding a sign into the number after it. */
static void lit_mark(lits *L, uint32_t lo, uint32_t hi)
{
    for (uint32_t i = lo; i < hi; i++) {
        ltok *v = &L->v[i];
        if (v->t.kind == TK_STRING && lw(L, i - 1, "uescape") && i >= 2) {
            if (L->v[i - 2].t.kind == TK_USTRING && v->t.end - v->t.start == 3)
                L->v[i - 2].esc = L->lx.s[v->t.start + 1];
            continue; /* the escape character of the literal before: part of it */
        }
        if (is_literal(v->t.kind)) {
            v->lit = true;
            v->negative =
                (v->t.kind == TK_INT || v->t.kind == TK_NUM) && i > lo && unary_minus(L, i - 1, lo);
        } else if (v->t.kind == TK_IDENT || v->t.kind == TK_QIDENT) {
            v->lit = word_constant(L, i);
        }
    }
}

/* Constants inside the brackets opened at i are part of a type name (varchar(10), int[3]). */
static void lit_unmark_inside(lits *L, uint32_t i)
{
    for (uint32_t k = i + 1; k < L->v[i].match && k < L->n; k++)
        L->v[k].lit = false;
}

/* A type name from i on: its modifiers and array bounds hold no numbered constants. */
static void lit_type(lits *L, uint32_t i)
{
    static const char *const more[] = {"precision", "varying", NULL};

    if (i >= L->n || (L->v[i].t.kind != TK_IDENT && L->v[i].t.kind != TK_QIDENT))
        return;
    for (i++; lp(L, i, '.') && i + 1 < L->n; i += 2)
        ;
    while (lw_any(L, i, more))
        i++;
    if (lp(L, i, '(')) {
        lit_unmark_inside(L, i);
        i = lit_skip(L, i);
    }
    if ((lw(L, i, "with") || lw(L, i, "without")) && lw(L, i + 1, "time") && lw(L, i + 2, "zone"))
        i += 3;
    for (;;) {
        if (lw(L, i, "array"))
            i++;
        if (!lp(L, i, '['))
            return;
        lit_unmark_inside(L, i);
        i = lit_skip(L, i);
    }
}

/* CAST(x AS type): the type follows the AS at the top level of the parentheses at i. */
static void lit_cast(lits *L, uint32_t i)
{
    for (uint32_t k = i + 1; k < L->v[i].match && k < L->n; k = lit_skip(L, k))
        if (lw(L, k, "as"))
            lit_type(L, k + 1);
}

static bool is_string_kind(tok_kind k)
{
    return k >= TK_STRING;
}

/* Type modifiers: after ::, in CAST, in typed literals (numeric(5,2) '1.5') and in the
 * precision of current_time(3) and its kin. */
static void lit_typmods(lits *L)
{
    static const char *const clocks[] = {"current_time", "current_timestamp", "localtime",
                                         "localtimestamp", NULL};

    for (uint32_t i = 0; i < L->n; i++) {
        if (lop(L, i, "::"))
            lit_type(L, i + 1);
        else if (lw(L, i, "cast") && lp(L, i + 1, '('))
            lit_cast(L, i + 1);
        else if (lp(L, i, '(') && i > 0 && lw_any(L, i - 1, clocks))
            lit_unmark_inside(L, i);
        else if (lp(L, i, '(') && i > 0 && L->v[i - 1].t.kind == TK_IDENT &&
                 L->v[i].match + 1 < L->n && is_string_kind(L->v[L->v[i].match + 1].t.kind))
            lit_unmark_inside(L, i);
    }
}

static void lit_emit(lits *L, uint32_t i)
{
    if (L->v[i].lit && !L->v[i].done) {
        L->v[i].done = true;
        L->order[L->n_order++] = i;
    }
}

static void walk_query(lits *L, uint32_t lo, uint32_t hi, int depth);

/* Whether [lo, hi) is a query: SELECT, VALUES, WITH or TABLE, maybe in more parentheses. */
static bool starts_query(const lits *L, uint32_t lo, uint32_t hi)
{
    static const char *const heads[] = {"select", "values", "with", "table", NULL};

    while (lo < hi && lp(L, lo, '('))
        lo++;
    return lo < hi && lw_any(L, lo, heads);
}

/* Expressions are walked in text order, but a subquery in parentheses in its own order. */
static void walk_expr(lits *L, uint32_t lo, uint32_t hi, int depth)
{
    for (uint32_t i = lo; i < hi && i < L->n; i++) {
        if (lp(L, i, '(') && depth < LIT_MAX_NESTING && starts_query(L, i + 1, L->v[i].match)) {
            uint32_t end = L->v[i].match < hi ? L->v[i].match : hi;
            walk_query(L, i + 1, end, depth + 1);
            i = end;
            continue;
        }
        lit_emit(L, i);
    }
}

/* ORDER BY 1 and GROUP BY 1 name a column by position: normalize leaves the number alone. */
static void unmark_positions(lits *L, uint32_t lo, uint32_t hi, bool sort)
{
    static const char *const modifiers[] = {"asc", "desc", "nulls", "using", NULL};
    uint32_t a = lo + 2; /* after ORDER BY / GROUP BY */

    while (a < hi) {
        uint32_t b = a;
        while (b < hi && !lp(L, b, ','))
            b = lit_skip(L, b);
        uint32_t k = lop(L, a, "-") && a + 1 < b && L->v[a + 1].negative ? a + 1 : a;
        bool alone = k + 1 == b || (sort && lw_any(L, k + 1, modifiers));
        if (k < b && L->v[k].t.kind == TK_INT && alone)
            L->v[k].lit = false;
        a = b + 1;
    }
}

typedef enum seg_kind { SEG_EXPR, SEG_SORT, SEG_GROUP, SEG_QUERY } seg_kind;

typedef struct segment {
    uint32_t lo, hi;
    int rank; /* walk order: lower first, then text order */
    seg_kind kind;
} segment;

typedef struct clause_word {
    const char *word;
    int rank;
    seg_kind kind;
} clause_word;

/* Whether the word at i starts a clause of the given list; FROM in IS DISTINCT FROM does not,
 * nor GROUP and ORDER without BY, nor FOR that does not lock. */
static const clause_word *clause_at(const lits *L, uint32_t i, const clause_word *words)
{
    static const char *const locks[] = {"update", "share", "no", "key", NULL};

    if (i >= L->n || L->v[i].word[0] == '\0')
        return NULL;
    for (; words->word != NULL; words++) {
        if (!lw(L, i, words->word))
            continue;
        if (lw(L, i, "from") && i > 0 && lw(L, i - 1, "distinct"))
            return NULL;
        if ((lw(L, i, "group") || lw(L, i, "order")) && !lw(L, i + 1, "by"))
            return NULL;
        if (lw(L, i, "for") && !lw_any(L, i + 1, locks))
            return NULL;
        return words;
    }
    return NULL;
}

/* Cuts [lo, hi) at the top-level clause words into segments; false if there are too many. */
static bool split_clauses(const lits *L, uint32_t lo, uint32_t hi, const clause_word *words,
                          int head_rank, segment *seg, int *n)
{
    *n = 0;
    seg[0] = (segment){lo, hi, head_rank, SEG_EXPR};
    for (uint32_t i = lo; i < hi; i = lit_skip(L, i)) {
        const clause_word *w = clause_at(L, i, words);
        if (w == NULL || i == lo)
            continue;
        if (*n + 1 >= LIT_MAX_SEGMENTS)
            return false;
        seg[*n].hi = i;
        seg[++*n] = (segment){i, hi, w->rank, w->kind};
    }
    if (lo < hi && clause_at(L, lo, words) != NULL) {
        const clause_word *w = clause_at(L, lo, words);
        seg[0].rank = w->rank;
        seg[0].kind = w->kind;
    }
    (*n)++;
    return true;
}

static void walk_segment(lits *L, const segment *s, int depth)
{
    if (s->kind == SEG_SORT || s->kind == SEG_GROUP)
        unmark_positions(L, s->lo, s->hi, s->kind == SEG_SORT);
    if (s->kind == SEG_QUERY)
        walk_query(L, s->lo, s->hi, depth + 1);
    else
        walk_expr(L, s->lo, s->hi, depth);
}

/* Walks the segments by rank (stable: equal ranks in text order). */
static void walk_ranked(lits *L, const segment *seg, int n, int depth)
{
    int lowest = INT_MAX, next;

    for (int i = 0; i < n; i++)
        lowest = seg[i].rank < lowest ? seg[i].rank : lowest;
    for (int rank = lowest; rank != INT_MAX; rank = next) {
        next = INT_MAX;
        for (int i = 0; i < n; i++) {
            if (seg[i].rank == rank)
                walk_segment(L, &seg[i], depth);
            else if (seg[i].rank > rank && seg[i].rank < next)
                next = seg[i].rank;
        }
    }
}

/* Clause ranks of a SELECT in the walk order of the parse tree. */
enum {
    R_TARGETS,
    R_INTO,
    R_FROM,
    R_WHERE,
    R_GROUP,
    R_SORT,
    R_HAVING,
    R_WINDOW,
    R_OFFSET,
    R_LIMIT,
    R_LOCK,
    R_WITH,
    R_OPERANDS
};

static const clause_word select_clauses[] = {{"into", R_INTO, SEG_EXPR},
                                             {"from", R_FROM, SEG_EXPR},
                                             {"where", R_WHERE, SEG_EXPR},
                                             {"group", R_GROUP, SEG_GROUP},
                                             {"having", R_HAVING, SEG_EXPR},
                                             {"window", R_WINDOW, SEG_EXPR},
                                             {NULL, 0, SEG_EXPR}};

static const clause_word tail_clauses[] = {
    {"order", R_SORT, SEG_SORT},  {"offset", R_OFFSET, SEG_EXPR}, {"limit", R_LIMIT, SEG_EXPR},
    {"fetch", R_LIMIT, SEG_EXPR}, {"for", R_LOCK, SEG_EXPR},      {NULL, 0, SEG_EXPR}};

static const char *const set_ops[] = {"union", "intersect", "except", NULL};

/* Where the query after WITH's common table expressions starts. */
static uint32_t main_start(const lits *L, uint32_t i, uint32_t hi)
{
    static const char *const heads[] = {"select", "values", "table", "insert",
                                        "update", "delete", "merge", NULL};

    for (; i < hi; i = lit_skip(L, i)) {
        if (lw_any(L, i, heads))
            return i;
        if (lp(L, i, '(') && i > 0 && lp(L, i - 1, ')'))
            return i;
    }
    return hi;
}

/* The first top-level ORDER BY, OFFSET, LIMIT, FETCH or locking clause after the last set
 * operation: those belong to the whole query. */
static uint32_t tail_start(const lits *L, uint32_t lo, uint32_t hi)
{
    uint32_t tail = hi;

    for (uint32_t i = lo; i < hi; i = lit_skip(L, i)) {
        if (lw_any(L, i, set_ops))
            tail = hi;
        else if (tail == hi && clause_at(L, i, tail_clauses) != NULL)
            tail = i;
    }
    return tail;
}

/* One operand of a query: a plain SELECT, VALUES lists, or a query in parentheses. */
static void walk_operand(lits *L, uint32_t lo, uint32_t hi, const segment *sort, int depth)
{
    segment seg[LIT_MAX_SEGMENTS + 1];
    int n;

    while (lo < hi && (lw(L, lo, "all") || lw(L, lo, "distinct")))
        lo++;
    if (lp(L, lo, '(') && L->v[lo].match == hi - 1) {
        walk_query(L, lo + 1, hi - 1, depth + 1);
    } else if (!split_clauses(L, lo, hi, select_clauses, R_TARGETS, seg, &n)) {
        walk_expr(L, lo, hi, depth);
    } else {
        if (sort != NULL)
            seg[n++] = *sort;
        walk_ranked(L, seg, n, depth);
        return;
    }
    if (sort != NULL)
        walk_segment(L, sort, depth);
}

static void walk_operands(lits *L, uint32_t lo, uint32_t hi, int depth)
{
    uint32_t a = lo;

    for (uint32_t i = lo; i < hi; i = lit_skip(L, i)) {
        if (lw_any(L, i, set_ops)) {
            walk_operand(L, a, i, NULL, depth);
            a = i + 1;
        }
    }
    walk_operand(L, a, hi, NULL, depth);
}

static bool has_set_op(const lits *L, uint32_t lo, uint32_t hi)
{
    for (uint32_t i = lo; i < hi; i = lit_skip(L, i))
        if (lw_any(L, i, set_ops))
            return true;
    return false;
}

/* The query's own clauses: a plain one walks ORDER BY between GROUP BY and HAVING; a set
 * operation walks its ORDER BY, OFFSET, LIMIT, locking and WITH before its operands. */
static void walk_query_body(lits *L, uint32_t lo, uint32_t m, uint32_t hi, int depth)
{
    segment tail[LIT_MAX_SEGMENTS + 2], rest[LIT_MAX_SEGMENTS + 2];
    const segment *sort = NULL;
    uint32_t t = tail_start(L, m, hi);
    int n = 0, k = 0;

    if (t < hi && !split_clauses(L, t, hi, tail_clauses, R_SORT, tail, &n)) {
        walk_expr(L, lo, hi, depth);
        return;
    }
    if (m > lo)
        tail[n++] = (segment){lo, m, R_WITH, SEG_EXPR};
    if (has_set_op(L, m, t)) {
        walk_ranked(L, tail, n, depth);
        walk_operands(L, m, t, depth);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (tail[i].kind == SEG_SORT && sort == NULL)
            sort = &tail[i];
        else
            rest[k++] = tail[i];
    }
    walk_operand(L, m, t, sort, depth);
    walk_ranked(L, rest, k, depth);
}

static void walk_query(lits *L, uint32_t lo, uint32_t hi, int depth)
{
    if (lo >= hi)
        return;
    if (depth > LIT_MAX_NESTING)
        walk_expr(L, lo, hi, depth);
    else if (lp(L, lo, '(') && L->v[lo].match == hi - 1)
        walk_query(L, lo + 1, hi - 1, depth + 1);
    else
        walk_query_body(L, lo, lw(L, lo, "with") ? main_start(L, lo + 1, hi) : lo, hi, depth);
}

/* INSERT: the rows (VALUES or a query) in their own order; the rest in text order. */
static void walk_insert(lits *L, uint32_t lo, uint32_t hi)
{
    uint32_t q = hi, e = hi;

    for (uint32_t i = lo + 1; i < hi; i = lit_skip(L, i)) {
        bool rows = lw(L, i, "select") || lw(L, i, "with") || lw(L, i, "table") ||
                    (lw(L, i, "values") && !lw(L, i - 1, "default")) ||
                    (lp(L, i, '(') && starts_query(L, i + 1, L->v[i].match));
        if (q == hi && rows)
            q = i;
        else if (q < hi && ((lw(L, i, "on") && lw(L, i + 1, "conflict")) || lw(L, i, "returning")))
            e = e == hi ? i : e;
    }
    walk_expr(L, lo, q, 0);
    walk_query(L, q, e, 1);
    walk_expr(L, e, hi, 0);
}

static const clause_word update_clauses[] = {
    {"from", 2, SEG_EXPR}, {"where", 1, SEG_EXPR}, {"returning", 3, SEG_EXPR}, {NULL, 0, SEG_EXPR}};

/* UPDATE: the tree holds SET, WHERE, FROM, RETURNING in that order. */
static void walk_dml(lits *L, uint32_t lo, uint32_t hi)
{
    segment seg[LIT_MAX_SEGMENTS + 1];
    int n;

    if (lw(L, lo, "insert"))
        walk_insert(L, lo, hi);
    else if (lw(L, lo, "update") && split_clauses(L, lo, hi, update_clauses, 0, seg, &n))
        walk_ranked(L, seg, n, 0);
    else
        walk_expr(L, lo, hi, 0);
}

/* EXPLAIN, DECLARE, PREPARE, CREATE ... AS: the query inside in its own order. */
static void walk_other(lits *L, uint32_t lo, uint32_t hi)
{
    static const char *const dml[] = {"insert", "update", "delete", "merge", NULL};

    for (uint32_t i = lo + 1; i < hi; i = lit_skip(L, i)) {
        bool query = lw(L, i, "select") || (lw(L, i, "values") && lp(L, i + 1, '('));
        if (query || lw_any(L, i, dml)) {
            walk_expr(L, lo, i, 0);
            if (query)
                walk_query(L, i, hi, 0);
            else
                walk_dml(L, i, hi);
            return;
        }
    }
    walk_expr(L, lo, hi, 0);
}

static void walk_statement(lits *L, uint32_t lo, uint32_t hi)
{
    static const char *const dml[] = {"insert", "update", "delete", "merge", NULL};
    static const char *const queries[] = {"select", "values", "table", NULL};
    uint32_t m;

    if (lo >= hi)
        return;
    m = lw(L, lo, "with") ? main_start(L, lo + 1, hi) : lo;
    if (m < hi && lw_any(L, m, dml)) {
        walk_dml(L, m, hi);
        walk_expr(L, lo, m, 0); /* a DML statement's WITH comes last */
        return;
    }
    if (lw_any(L, lo, queries) || lp(L, lo, '(') || m > lo) {
        walk_query(L, lo, hi, 0);
        return;
    }
    walk_other(L, lo, hi);
}

/* ---- decoding a literal's value ---- */

static char *put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        *out++ = (char)cp;
    } else if (cp < 0x800) {
        *out++ = (char)(0xC0 | (cp >> 6));
        *out++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *out++ = (char)(0xE0 | (cp >> 12));
        *out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *out++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *out++ = (char)(0xF0 | (cp >> 18));
        *out++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *out++ = (char)(0x80 | (cp & 0x3F));
    }
    return out;
}

/* Reads up to max hex digits at s[*i]; -1 if there are fewer than min. */
static long read_hex(const char *s, size_t n, size_t *i, int min, int max)
{
    long v = 0;
    int k = 0;

    while (k < max && *i < n && hex_value((unsigned char)s[*i]) >= 0) {
        v = v * 16 + hex_value((unsigned char)s[(*i)++]);
        k++;
    }
    return k >= min ? v : -1;
}

/* A code point, with a pending high surrogate joined to the low one after it. */
static char *put_code_point(char *out, long cp, uint32_t *high)
{
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        *high = (uint32_t)cp;
        return out;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF && *high != 0)
        cp = 0x10000 + (((long)*high - 0xD800) << 10) + (cp - 0xDC00);
    *high = 0;
    return cp >= 0 && cp <= 0x10FFFF ? put_utf8(out, (uint32_t)cp) : out;
}

static char *put_byte(char *out, long v)
{
    *out = (char)v;
    return out + 1;
}

/* One backslash escape of an E'' string at s[*i] (just after the backslash). */
static char *put_escape(char *out, const char *s, size_t n, size_t *i, uint32_t *high)
{
    static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
    char c = s[(*i)++];
    const char *k = c != '\0' ? strchr(from, c) : NULL;
    long v;

    if (k != NULL)
        return put_byte(out, to[k - from]);
    if (c >= '0' && c <= '7') {
        v = c - '0';
        for (int d = 1; d < 3 && *i < n && s[*i] >= '0' && s[*i] <= '7'; d++)
            v = v * 8 + (s[(*i)++] - '0');
        return put_byte(out, v);
    }
    if (c == 'x' && (v = read_hex(s, n, i, 1, 2)) >= 0)
        return put_byte(out, v);
    if (c == 'u' && (v = read_hex(s, n, i, 4, 4)) >= 0)
        return put_code_point(out, v, high);
    if (c == 'U' && (v = read_hex(s, n, i, 8, 8)) >= 0)
        return put_code_point(out, v, high);
    return put_byte(out, c);
}

/* One escape of a U&'' string at s[*i] (just after the escape character). */
static char *put_uescape(char *out, const char *s, size_t n, size_t *i, char esc, uint32_t *high)
{
    long v;

    if (*i < n && s[*i] == esc) {
        (*i)++;
        return put_byte(out, esc);
    }
    if (*i < n && s[*i] == '+') {
        (*i)++;
        v = read_hex(s, n, i, 6, 6);
    } else {
        v = read_hex(s, n, i, 4, 4);
    }
    return v >= 0 ? put_code_point(out, v, high) : put_byte(out, esc);
}

/* The characters of a quoted literal: every part of a continued string, '' made one quote;
 * backslash pairs of E'' strings kept whole for put_escape. */
static size_t quoted_raw(const lexer *lx, const token *t, size_t prefix, bool e, char *out)
{
    size_t p = t->start + prefix + 1, m = 0;

    while (p < t->end) {
        char c = lx->s[p];
        if (e && c == '\\' && p + 1 < t->end) {
            out[m++] = c;
            out[m++] = lx->s[p + 1];
            p += 2;
        } else if (c == '\'' && p + 1 < t->end && lx->s[p + 1] == '\'') {
            out[m++] = '\'';
            p += 2;
        } else if (c == '\'') {
            size_t again = quote_continues(lx, p + 1);
            if (again == 0 || again >= t->end)
                break;
            p = again + 1;
        } else {
            out[m++] = c;
            p++;
        }
    }
    return m;
}

/* Resolves the escapes of raw[0..n) into out; returns the length. */
static size_t unescape(const char *raw, size_t n, tok_kind kind, char esc, char *out)
{
    char *w = out;
    uint32_t high = 0;

    for (size_t i = 0; i < n;) {
        if (kind == TK_ESTRING && raw[i] == '\\' && i + 1 < n) {
            i++;
            w = put_escape(w, raw, n, &i, &high);
        } else if (kind == TK_USTRING && raw[i] == esc) {
            i++;
            w = put_uescape(w, raw, n, &i, esc, &high);
        } else if (kind == TK_XSTRING) {
            int v = hex_value((unsigned char)raw[i++]);
            for (int b = 3; v >= 0 && b >= 0; b--)
                *w++ = (char)('0' + ((v >> b) & 1));
        } else {
            *w++ = raw[i++];
        }
    }
    return (size_t)(w - out);
}

/* A "quoted" identifier without its quotes, "" made one quote (U&"" left as written). */
static size_t unquote_ident(const char *s, size_t n, char *out)
{
    size_t m = 0;

    if (n < 2 || s[0] != '"') {
        memcpy(out, s, n);
        return n;
    }
    for (size_t k = 1; k + 1 < n; k++) {
        out[m++] = s[k];
        if (s[k] == '"' && s[k + 1] == '"')
            k++;
    }
    return m;
}

/* The value of the constant at i into out (4 bytes per byte of the token, plus 2). */
static size_t lit_value(const lits *L, uint32_t i, char *out, char *raw)
{
    const ltok *v = &L->v[i];
    const token *t = &v->t;
    const char *s = L->lx.s + t->start;
    size_t n = t->end - t->start, m = 0;

    switch (t->kind) {
    case TK_INT:
    case TK_NUM:
        if (v->negative)
            out[m++] = '-';
        memcpy(out + m, s, n);
        return m + n;
    case TK_IDENT:
        for (; m < n; m++)
            out[m] = (char)lower_ascii((unsigned char)s[m]);
        return n;
    case TK_QIDENT:
        return unquote_ident(s, n, out);
    case TK_DOLLAR: {
        const char *close = memchr(s + 1, '$', n - 1);
        size_t delim = close ? (size_t)(close - s) + 1 : n; /* $tag$ */
        m = n >= 2 * delim ? n - 2 * delim : 0;
        memcpy(out, s + delim, m);
        return m;
    }
    default: {
        size_t prefix = t->kind == TK_STRING ? 0 : t->kind == TK_USTRING ? 2 : 1;
        m = quoted_raw(&L->lx, t, prefix, t->kind == TK_ESTRING, raw);
        return unescape(raw, m, t->kind, v->esc, out);
    }
    }
}

static void lits_free(lits *L)
{
    free(L->v);
    free(L->order);
}

/* Marks the constants and orders them, statement by statement. */
static void lits_walk(lits *L)
{
    uint32_t start = 0;

    for (uint32_t i = 0; i <= L->n; i++) {
        if (i < L->n && !lp(L, i, ';'))
            continue;
        lit_mark(L, start, i);
        start = i + 1;
    }
    lit_typmods(L);
    start = 0;
    for (uint32_t i = 0; i <= L->n; i++) {
        if (i < L->n && !lp(L, i, ';'))
            continue;
        walk_statement(L, start, i);
        start = i + 1;
    }
    for (uint32_t i = 0; i < L->n; i++) /* anything the walk missed, rather than nothing */
        lit_emit(L, i);
}

int fp_literals(const char *text, size_t len, void (*fn)(const char *value, size_t len, void *arg),
                void *arg)
{
    lits L;
    size_t longest = 0;
    char *out = NULL, *raw = NULL;
    int count = 0;

    memset(&L, 0, sizeof L);
    if (lit_lex(&L, text, len) && (L.order = malloc((L.n + 1) * sizeof *L.order)) != NULL) {
        lits_walk(&L);
        for (uint32_t k = 0; k < L.n_order; k++) {
            const token *t = &L.v[L.order[k]].t;
            longest = t->end - t->start > longest ? t->end - t->start : longest;
        }
        out = malloc(4 * longest + 2); /* X'' strings grow 4 times, a sign adds one */
        raw = malloc(longest + 1);
    }
    for (uint32_t k = 0; out != NULL && raw != NULL && k < L.n_order; k++) {
        size_t n = lit_value(&L, L.order[k], out, raw);
        out[n] = '\0';
        fn(out, n, arg);
        count++;
    }
    free(out);
    free(raw);
    lits_free(&L);
    return count;
}

/* ---- the one table of a SELECT ---- */

#define NO_TABLE UINT32_MAX

/* Whether two name tokens name the same thing: quoted ones byte for byte, unquoted ones
 * without regard to ASCII case. */
static bool same_name(const lexer *lx, const token *a, const token *b)
{
    size_t n = a->end - a->start;

    if (a->kind != b->kind || n != b->end - b->start)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)lx->s[a->start + i],
                      y = (unsigned char)lx->s[b->start + i];
        if (a->kind == TK_IDENT ? lower_ascii(x) != lower_ascii(y) : x != y)
            return false;
    }
    return true;
}

static bool is_name(const lits *L, uint32_t i)
{
    return i < L->n && !L->v[i].t.bad &&
           (L->v[i].t.kind == TK_IDENT || L->v[i].t.kind == TK_QIDENT);
}

/* Whether the WITH clause [lo, m) defines the name at i: a FROM naming it reads no table. */
static bool is_cte_name(const lits *L, uint32_t lo, uint32_t m, uint32_t i)
{
    for (uint32_t k = lo + 1; k < m; k = lit_skip(L, k)) {
        bool head = lw(L, k - 1, "with") || lw(L, k - 1, "recursive") || lp(L, k - 1, ',');
        if (head && is_name(L, k) && same_name(&L->lx, &L->v[k].t, &L->v[i].t))
            return true;
    }
    return false;
}

static const clause_word from_word[] = {{"from", 0, SEG_EXPR}, {NULL, 0, SEG_EXPR}};

/* After the table name: an alias, TABLESAMPLE, then the end of the FROM clause. A comma or a
 * JOIN means more tables. */
static bool from_ends_alone(const lits *L, uint32_t i, uint32_t hi)
{
    static const char *const ends[] = {"where", "group",  "having", "window", "order",
                                       "limit", "offset", "fetch",  "for",    NULL};
    static const char *const joins[] = {"join",  "inner",   "left",    "right", "full",
                                        "cross", "natural", "lateral", NULL};

    for (; i < hi; i = lit_skip(L, i)) {
        if (lw_any(L, i, ends))
            return true;
        if (lp(L, i, ',') || lw_any(L, i, joins))
            return false;
    }
    return true;
}

/* The first token of the one table named in the FROM clause of the SELECT [m, hi); its name
 * ends at *end. NO_TABLE if there is no such clause or it names more or other things. */
static uint32_t from_one_table(const lits *L, uint32_t m, uint32_t hi, uint32_t *end)
{
    uint32_t from = hi, i;

    for (i = m; i < hi; i = lit_skip(L, i)) {
        if (lw_any(L, i, set_ops))
            return NO_TABLE;
        if (from == hi && clause_at(L, i, from_word) != NULL)
            from = i;
    }
    i = lw(L, from + 1, "only") ? from + 2 : from + 1;
    if (from == hi || !is_name(L, i) || lw(L, i, "lateral"))
        return NO_TABLE;
    for (*end = i + 1; lp(L, *end, '.') && is_name(L, *end + 1); *end += 2)
        ;
    if (lp(L, *end, '(') || !from_ends_alone(L, *end, hi))
        return NO_TABLE; /* a function, or more than one table */
    return i;
}

/* Writes the name [i, end): parts joined by dots, quotes removed, unquoted parts in lower
 * case as PostgreSQL folds them. A name that does not fit is not written at all: a cut name
 * would be another table's. */
static void put_table(const lits *L, uint32_t i, uint32_t end, char *out, size_t cap)
{
    size_t used = 0;
    bool fits = true;

    for (; fits && i < end; i++) {
        const token *t = &L->v[i].t;
        char part[256];
        size_t n = t->end - t->start;
        if (n >= sizeof part) {
            fits = false;
        } else if (t->kind == TK_QIDENT) {
            n = unquote_ident(L->lx.s + t->start, n, part);
        } else {
            for (size_t k = 0; k < n; k++)
                part[k] = (char)lower_ascii((unsigned char)L->lx.s[t->start + k]);
        }
        fits = fits && append_cut(out, &used, cap - 1, part, n);
    }
    out[fits ? used : 0] = '\0';
}

void fp_single_table(const char *text, size_t len, char *out, size_t cap)
{
    lits L;
    uint32_t hi = 0, m = 0, end = 0, name = NO_TABLE;

    if (cap == 0)
        return;
    out[0] = '\0';
    memset(&L, 0, sizeof L);
    if (lit_lex(&L, text, len)) {
        while (hi < L.n && !lp(&L, hi, ';'))
            hi++;
        m = lw(&L, 0, "with") ? main_start(&L, 1, hi) : 0;
        if (lw(&L, m, "select"))
            name = from_one_table(&L, m, hi, &end);
        if (name != NO_TABLE && end == name + 1 && m > 0 && is_cte_name(&L, 0, m, name))
            name = NO_TABLE;
    }
    if (name != NO_TABLE)
        put_table(&L, name, end, out, cap);
    lits_free(&L);
}
