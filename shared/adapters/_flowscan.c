/*
 * _flowscan: the native fast path of the flow-log reader (shared/adapters/flow_scan.py).
 *
 * A Scanner reads whole VNet flow log blobs (PT1H.json, reference/azure-formats.md section 2)
 * and aggregates their tuples by the Traffic Analytics key, exactly as the reader's SQL does
 * (shared/adapters/flow_log_reader.py, _BATCH_SQL), but only for blobs in a strict canonical
 * subset of the format: ASCII JSON without escapes, the documented shape, flowLogVersion 4 in
 * every record, and tuples that are all good (13 fields, digits where numbers are, canonical
 * dotted IPv4 or an address the SQL would count as a problem). Anything else - a syntax error,
 * an escape, an odd field, a bad tuple - DECLINES the whole blob, and the caller hands that
 * blob to the SQL reader, which judges it (reasons, counts, examples) as it always has. So the
 * scanner never has to reproduce the SQL's verdict on odd input: it only has to agree with it
 * on the input it takes, which the differential tests check.
 *
 * A declined blob leaves no trace in the aggregates: its tuples are staged and only committed
 * once the whole blob has been read. feed() releases the GIL while it parses, so one Scanner
 * per thread reads blobs in parallel; merge() folds one Scanner into another.
 *
 * The aggregates leave through the Arrow C stream interface (flows().__arrow_c_stream__):
 * DuckDB scans the column buffers in place, with no copy and no pyarrow.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* decline reasons (index = code; 0 = taken)                                                  */

enum {
    TAKEN = 0,
    D_SYNTAX = 1,   /* not JSON, or JSON this scanner does not read (whitespace, literals) */
    D_ASCII = 2,    /* a byte outside printable ASCII in a string, or outside strings */
    D_ESCAPE = 3,   /* a backslash escape in a string */
    D_SHAPE = 4,    /* not the documented shape (a missing or mistyped field) */
    D_VERSION = 5,  /* a record whose flowLogVersion is not 4 */
    D_TUPLE = 6,    /* a tuple the SQL reader must judge (not 13 plain fields, a bad value) */
    D_ADDRESS = 7,  /* a dotted address with leading zeros (the SQL reader keeps its text) */
    D_EMPTY = 8,    /* no tuples at all */
    D_DEPTH = 9,    /* nested deeper than MAX_DEPTH */
    D_KEY = 10,     /* a field given twice, or a known field in another case */
    D_NUMBER = 11,  /* a number other than a plain integer */
    D_COUNT = 12
};

static const char *const DECLINE_REASONS[D_COUNT] = {
    "taken",
    "not JSON this scanner reads",
    "a byte outside printable ASCII",
    "an escape sequence in a string",
    "not the documented shape",
    "a record whose flowLogVersion is not 4",
    "a tuple the SQL reader must judge",
    "a dotted address with leading zeros",
    "no tuples",
    "nested too deep",
    "a field given twice or in another case",
    "a number other than a plain integer",
};

#define MAX_DEPTH 64
#define ERR_NOMEM (-1)

/* address problems, as the SQL reader names them (flow_scan.py maps the index to the text) */
enum { P_IPV6 = 0, P_BAD = 1, P_COUNT = 2 };

/* ------------------------------------------------------------------------------------------ */
/* hashing                                                                                     */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix64(h ^ w) + 0x632be59bd9b4e019ULL;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix64(h ^ w);
}

/* ------------------------------------------------------------------------------------------ */
/* interned strings: id -> (offset, length) in an arena; open addressing on the hash           */

typedef struct {
    char *arena;
    size_t arena_len, arena_cap;
    size_t *off;
    uint32_t *len;
    uint64_t *hash;
    uint32_t count, cap; /* ids */
    uint32_t *slots;     /* id + 1, 0 = empty */
    uint32_t nslots;     /* power of two */
} Strings;

static int strings_init(Strings *t) {
    memset(t, 0, sizeof *t);
    t->nslots = 256;
    t->slots = calloc(t->nslots, sizeof *t->slots);
    return t->slots ? 0 : ERR_NOMEM;
}

static void strings_free(Strings *t) {
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->hash);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static inline const char *strings_at(const Strings *t, uint32_t id) { return t->arena + t->off[id]; }

static int strings_grow_slots(Strings *t) {
    uint32_t n = t->nslots * 2;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots) return ERR_NOMEM;
    for (uint32_t id = 0; id < t->count; id++) {
        uint32_t i = (uint32_t)t->hash[id] & (n - 1);
        while (slots[i]) i = (i + 1) & (n - 1);
        slots[i] = id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = n;
    return 0;
}

/* The id of s[0:n], added when new. Returns 0 or ERR_NOMEM. */
static int strings_intern(Strings *t, const char *s, size_t n, uint32_t *id_out) {
    if (n > UINT32_MAX) return ERR_NOMEM;
    uint64_t h = hash_bytes(s, n);
    uint32_t mask = t->nslots - 1;
    uint32_t i = (uint32_t)h & mask;
    while (t->slots[i]) {
        uint32_t id = t->slots[i] - 1;
        if (t->hash[id] == h && t->len[id] == n && memcmp(strings_at(t, id), s, n) == 0) {
            *id_out = id;
            return 0;
        }
        i = (i + 1) & mask;
    }
    if (t->count == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 64;
        size_t *off = realloc(t->off, cap * sizeof *off);
        if (!off) return ERR_NOMEM;
        t->off = off;
        uint32_t *len = realloc(t->len, cap * sizeof *len);
        if (!len) return ERR_NOMEM;
        t->len = len;
        uint64_t *hash = realloc(t->hash, cap * sizeof *hash);
        if (!hash) return ERR_NOMEM;
        t->hash = hash;
        t->cap = cap;
    }
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + n + 1) cap *= 2;
        char *arena = realloc(t->arena, cap);
        if (!arena) return ERR_NOMEM;
        t->arena = arena;
        t->arena_cap = cap;
    }
    uint32_t id = t->count++;
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = '\0';
    t->off[id] = t->arena_len;
    t->len[id] = (uint32_t)n;
    t->hash[id] = h;
    t->arena_len += n + 1;
    t->slots[i] = id + 1;
    *id_out = id;
    if ((uint64_t)t->count * 2 > t->nslots) return strings_grow_slots(t);
    return 0;
}

/* Forget every string from id `count` on (those a declined blob added), newest first: an older
 * string's probe chain never crosses a newer one's slot, and clearing the newest first keeps
 * every remaining chain intact while the others are looked up. */
static void strings_truncate(Strings *t, uint32_t count, size_t arena_len) {
    uint32_t mask = t->nslots - 1;
    for (uint32_t id = t->count; id-- > count;) {
        uint32_t i = (uint32_t)t->hash[id] & mask;
        while (t->slots[i] != id + 1) i = (i + 1) & mask;
        t->slots[i] = 0;
    }
    t->count = count < t->count ? count : t->count;
    t->arena_len = arena_len < t->arena_len ? arena_len : t->arena_len;
}

/* byte-wise order, as DuckDB compares VARCHAR */
static inline int strings_less(const Strings *t, uint32_t a, uint32_t b) {
    if (a == b) return 0;
    uint32_t la = t->len[a], lb = t->len[b];
    int c = memcmp(strings_at(t, a), strings_at(t, b), la < lb ? la : lb);
    return c < 0 || (c == 0 && la < lb);
}

/* ------------------------------------------------------------------------------------------ */
/* aggregated flows: one entry per Traffic Analytics key                                       */

/* key: k0 = interval start (ms); k1 = mac | acl << 32; k2 = rule | src << 32;
 *      k3 = dst | dport << 32 | proto << 48 | (inbound | denied << 1) << 56 */
typedef struct {
    uint64_t k[4];
    int64_t first_ms, last_ms, first_bd, last_bd; /* bd: begun/denied moments; none = sentinel */
    int64_t begun, refused, ended, tuples;
    int64_t c[4]; /* packets s>d, bytes s>d, packets d>s, bytes d>s */
    uint32_t enc, flowlog, target, pad;
} Entry;

#define NO_BD_FIRST INT64_MAX
#define NO_BD_LAST INT64_MIN

/* A hash table of entries by key. Slots carry a generation: a slot of another generation is
 * empty, so the per-blob table is emptied by bumping it (no clearing). */
typedef struct {
    Entry *e;
    uint32_t count, cap;
    uint64_t *slots; /* gen << 32 | (entry + 1) */
    uint32_t nslots; /* power of two */
    uint32_t gen;
} Flows;

static int flows_init(Flows *f, uint32_t nslots) {
    memset(f, 0, sizeof *f);
    f->nslots = nslots;
    f->gen = 1;
    f->slots = calloc(f->nslots, sizeof *f->slots);
    return f->slots ? 0 : ERR_NOMEM;
}

static void flows_free(Flows *f) {
    free(f->e);
    free(f->slots);
    memset(f, 0, sizeof *f);
}

static void flows_reset(Flows *f) {
    if (++f->gen == 0) { /* 2^32 resets: clear once and start again */
        memset(f->slots, 0, (size_t)f->nslots * sizeof *f->slots);
        f->gen = 1;
    }
    f->count = 0;
}

static inline int slot_used(const Flows *f, uint64_t slot) {
    return (uint32_t)(slot >> 32) == f->gen && (uint32_t)slot != 0;
}

static inline uint64_t key_hash(const uint64_t k[4]) {
    uint64_t h = k[0] * 0x9e3779b97f4a7c15ULL ^ k[1] * 0xc2b2ae3d27d4eb4fULL ^
                 k[2] * 0x165667b19e3779f9ULL ^ k[3] * 0xd6e8feb86659fd93ULL;
    return h ^ h >> 29 ^ h >> 47;
}

static int flows_rehash(Flows *f, uint32_t n) {
    uint64_t *slots = calloc(n, sizeof *slots);
    if (!slots) return ERR_NOMEM;
    uint64_t gen = (uint64_t)f->gen << 32;
    for (uint32_t j = 0; j < f->count; j++) {
        uint32_t i = (uint32_t)key_hash(f->e[j].k) & (n - 1);
        while ((uint32_t)slots[i]) i = (i + 1) & (n - 1);
        slots[i] = gen | (j + 1);
    }
    free(f->slots);
    f->slots = slots;
    f->nslots = n;
    return 0;
}

/* Room for n entries without growing. */
static int flows_reserve(Flows *f, uint64_t n) {
    if (n >= UINT32_MAX / 2) return ERR_NOMEM;
    if (n > f->cap) {
        Entry *e = realloc(f->e, (size_t)n * sizeof *e);
        if (!e) return ERR_NOMEM;
        f->e = e;
        f->cap = (uint32_t)n;
    }
    uint32_t want = f->nslots;
    while ((uint64_t)want < 2 * n + 2) want *= 2;
    return want == f->nslots ? 0 : flows_rehash(f, want);
}

/* The entry of key k whose hash is h (new entries zeroed, with their key and empty moments);
 * NULL: no memory. */
static Entry *flows_upsert(Flows *f, const uint64_t k[4], uint64_t h, int *created) {
    uint32_t mask = f->nslots - 1;
    uint32_t i = (uint32_t)h & mask;
    while (slot_used(f, f->slots[i])) {
        Entry *e = &f->e[(uint32_t)f->slots[i] - 1];
        if (e->k[0] == k[0] && e->k[1] == k[1] && e->k[2] == k[2] && e->k[3] == k[3]) {
            *created = 0;
            return e;
        }
        i = (i + 1) & mask;
    }
    if (f->count >= UINT32_MAX / 2) return NULL;
    if (f->count == f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 256;
        Entry *e = realloc(f->e, (size_t)cap * sizeof *e);
        if (!e) return NULL;
        f->e = e;
        f->cap = cap;
    }
    uint32_t j = f->count++;
    Entry *e = &f->e[j];
    memset(e, 0, sizeof *e);
    memcpy(e->k, k, sizeof e->k);
    e->first_ms = INT64_MAX;
    e->last_ms = INT64_MIN;
    e->first_bd = NO_BD_FIRST;
    e->last_bd = NO_BD_LAST;
    f->slots[i] = (uint64_t)f->gen << 32 | (j + 1);
    if ((uint64_t)f->count * 2 > f->nslots) {
        if (flows_rehash(f, f->nslots * 2)) {
            f->slots[i] = 0; /* undo the insertion (the slot ended its probe chain) */
            f->count--;
            return NULL;
        }
        e = &f->e[j];
    }
    *created = 1;
    return e;
}

/* Every blob's entries, appended (a key lives in the blob of its NIC and hour, so they rarely
 * repeat; when they may, see State.collide, they are merged by key before they leave). */
typedef struct {
    Entry *e;
    size_t count, cap;
} Rows;

static int rows_append(Rows *r, const Entry *e, size_t n) {
    if (n == 0) return 0; /* e may be NULL then */
    if (r->count + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->count + n) cap *= 2;
        Entry *p = realloc(r->e, cap * sizeof *p);
        if (!p) return ERR_NOMEM;
        r->e = p;
        r->cap = cap;
    }
    memcpy(r->e + r->count, e, n * sizeof *e);
    r->count += n;
    return 0;
}

/* (MAC id, interval number) -> the blob that had it: a key seen in two blobs shares this. */
typedef struct {
    uint64_t *key;
    uint32_t *blob; /* 0 = empty slot */
    uint32_t count, nslots;
} Pairs;

static int pairs_init(Pairs *p) {
    memset(p, 0, sizeof *p);
    p->nslots = 1024;
    p->key = calloc(p->nslots, sizeof *p->key);
    p->blob = calloc(p->nslots, sizeof *p->blob);
    return p->key && p->blob ? 0 : ERR_NOMEM;
}

static void pairs_free(Pairs *p) {
    free(p->key);
    free(p->blob);
    memset(p, 0, sizeof *p);
}

/* Record that `blob` has (mac, interval); *other: whether another blob had it already. */
static int pairs_see(Pairs *p, uint64_t key, uint32_t blob, int *other) {
    uint32_t mask = p->nslots - 1;
    uint32_t i = (uint32_t)mix64(key) & mask;
    while (p->blob[i]) {
        if (p->key[i] == key) {
            *other = p->blob[i] != blob;
            return 0;
        }
        i = (i + 1) & mask;
    }
    p->key[i] = key;
    p->blob[i] = blob;
    *other = 0;
    if (++p->count * 2 > p->nslots) {
        uint32_t n = p->nslots * 2;
        uint64_t *key2 = calloc(n, sizeof *key2);
        uint32_t *blob2 = calloc(n, sizeof *blob2);
        if (!key2 || !blob2) {
            free(key2);
            free(blob2);
            return ERR_NOMEM;
        }
        for (uint32_t j = 0; j < p->nslots; j++) {
            if (!p->blob[j]) continue;
            uint32_t k = (uint32_t)mix64(p->key[j]) & (n - 1);
            while (blob2[k]) k = (k + 1) & (n - 1);
            key2[k] = p->key[j];
            blob2[k] = p->blob[j];
        }
        free(p->key);
        free(p->blob);
        p->key = key2;
        p->blob = blob2;
        p->nslots = n;
    }
    return 0;
}

static inline int64_t sat_add(int64_t a, int64_t b, int64_t *saturated) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) {
        (*saturated)++;
        return INT64_MAX;
    }
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* per-blob staging (nothing reaches the aggregates until the whole blob is read)              */

typedef struct {
    uint32_t mac, flowlog, target;
    uint8_t have; /* bits: 1 mac, 2 flowlog, 4 target, 8 version 4 */
} StagedRecord;

typedef struct {
    uint32_t record, acl, rule;
    uint8_t have; /* bits: 1 acl, 2 rule */
} StagedGroup;

typedef struct {
    int64_t ts;
    int64_t c[4];
    uint32_t src, dst, group, enc;
    uint16_t dport;
    uint8_t proto, state; /* state: 'B', 'C', 'E', 'D' */
    uint8_t inbound;
} StagedTuple;

typedef struct {
    int64_t tuples;
    char *example; /* the smallest offending address (malloc'd), or NULL */
    size_t example_len;
} Problem;

typedef struct {
    StagedRecord *rec;
    size_t nrec, caprec;
    StagedGroup *grp;
    size_t ngrp, capgrp;
    StagedTuple *tup;
    size_t ntup, captup;
    /* address problems found in this blob: counts and smallest address, committed with it */
    int64_t problem_tuples[P_COUNT];
    const char *problem_min[P_COUNT];
    size_t problem_min_len[P_COUNT];
    int64_t records;
    int64_t direct; /* tuples aggregated as they were read (see TupleCtx.direct) */
    int64_t bytes;  /* the blob's size */
    uint32_t strings_mark; /* the string table before the blob (a decline rolls back to it) */
    size_t arena_mark;
    /* the last mac, flowlog and target text of this blob (pointers into it) and their ids */
    const char *last_s[3];
    size_t last_n[3];
    uint32_t last_id[3];
} Stage;

static void stage_free(Stage *s) {
    free(s->rec);
    free(s->grp);
    free(s->tup);
    memset(s, 0, sizeof *s);
}

static void stage_reset(Stage *s) {
    s->nrec = s->ngrp = s->ntup = 0;
    for (int i = 0; i < P_COUNT; i++) {
        s->problem_tuples[i] = 0;
        s->problem_min[i] = NULL;
        s->problem_min_len[i] = 0;
    }
    s->records = 0;
    s->direct = 0;
    for (int i = 0; i < 3; i++) s->last_s[i] = NULL;
}

#define GROW(ptr, n, cap, init)                                               \
    do {                                                                      \
        if ((n) == (cap)) {                                                   \
            size_t _cap = (cap) ? (cap) * 2 : (init);                         \
            void *_p = realloc((ptr), _cap * sizeof *(ptr));                  \
            if (!_p) return ERR_NOMEM;                                        \
            (ptr) = _p;                                                       \
            (cap) = _cap;                                                     \
        }                                                                     \
    } while (0)

static inline int bytes_less(const char *a, size_t la, const char *b, size_t lb) {
    int c = memcmp(a, b, la < lb ? la : lb);
    return c < 0 || (c == 0 && la < lb);
}

/* ------------------------------------------------------------------------------------------ */
/* the scanner state                                                                           */

typedef struct {
    int64_t interval_ms, min_ms, max_ms;
    Strings strings;
    Flows local;      /* the blob being committed, by key */
    Rows rows;        /* every committed blob's entries */
    Pairs pairs;      /* which blob had each (MAC, interval) */
    uint32_t blob_seq;
    int collide;      /* two blobs had a (MAC, interval): rows may repeat a key */
    int always_merge; /* rows came from another Scanner (merge): merge them by key on export */
    char *buf;               /* feed_file()'s reusable read buffer */
    size_t buf_cap;
    int64_t bytes;           /* bytes read by feed_file() */
    Stage stage;
    Problem problems[P_COUNT];
    int64_t blobs, records, tuples, saturated;
} State;

/* ------------------------------------------------------------------------------------------ */
/* the JSON reader                                                                             */

typedef struct {
    const char *p, *end;
    State *st;
    int depth;
} Cursor;

/* JSON's whitespace only (space, tab, line feed, carriage return) */
static inline void ws(Cursor *c) {
    if (c->p < c->end && (unsigned char)*c->p > ' ') return; /* the usual case: no space */
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SWAR 1 /* eight bytes at a time where the layout allows (byte 0 = lowest) */
#endif

/* The first byte from p on that a string we read cannot hold as it is: '"' (its end), '\\',
 * a control byte or one outside printable ASCII. Eight bytes at a time: for each test, the
 * lowest flagged byte of the word is a true hit (a borrow can only flag bytes above it). */
static inline const char *string_stop(const char *p, const char *end) {
#ifdef SWAR
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t quote = x ^ (ones * '"'), slash = x ^ (ones * '\\'), del = x ^ (ones * 0x7f);
        uint64_t hit = ((quote - ones) & ~quote) | ((slash - ones) & ~slash) |
                       ((del - ones) & ~del) | ((x - ones * 0x20) & ~x) | x;
        hit &= high;
        if (hit) return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
#else
    (void)end;
#endif
    return p;
}

/* A string's content: [*s, *s + *n). The cursor is on the opening quote. Declines escapes
 * and bytes outside printable ASCII. */
static inline int read_string(Cursor *c, const char **s, size_t *n) {
    if (c->p >= c->end || *c->p != '"') return D_SHAPE;
    const char *q = string_stop(++c->p, c->end);
    while (q < c->end) {
        unsigned char ch = (unsigned char)*q;
        if (ch == '"') {
            *s = c->p;
            *n = (size_t)(q - c->p);
            c->p = q + 1;
            return TAKEN;
        }
        if (ch == '\\') return D_ESCAPE;
        if (ch < 0x20 || ch >= 0x7f) return ch < 0x20 ? D_SYNTAX : D_ASCII;
        q++;
    }
    return D_SYNTAX;
}

static int skip_value(Cursor *c);

static int skip_number(Cursor *c) {
    const char *q = c->p;
    if (q < c->end && *q == '-') q++;
    const char *digits = q;
    while (q < c->end && *q >= '0' && *q <= '9') q++;
    size_t n = (size_t)(q - digits);
    if (n == 0 || (n > 1 && *digits == '0')) return D_SYNTAX;
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E')) return D_NUMBER;
    if (n > 18) return D_NUMBER;
    c->p = q;
    return TAKEN;
}

static int skip_literal(Cursor *c, const char *word, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return D_SYNTAX;
    c->p += n;
    return TAKEN;
}

static int skip_container(Cursor *c, char close) {
    if (++c->depth > MAX_DEPTH) return D_DEPTH;
    c->p++; /* the opening bracket */
    ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return TAKEN;
    }
    for (;;) {
        int r;
        if (close == '}') {
            const char *k;
            size_t kn;
            if ((r = read_string(c, &k, &kn))) return r == D_SHAPE ? D_SYNTAX : r;
            ws(c);
            if (c->p >= c->end || *c->p != ':') return D_SYNTAX;
            c->p++;
            ws(c);
        }
        if ((r = skip_value(c))) return r;
        ws(c);
        if (c->p >= c->end) return D_SYNTAX;
        if (*c->p == ',') {
            c->p++;
            ws(c);
            continue;
        }
        if (*c->p == close) {
            c->p++;
            c->depth--;
            return TAKEN;
        }
        return D_SYNTAX;
    }
}

static int skip_value(Cursor *c) {
    if (c->p >= c->end) return D_SYNTAX;
    switch (*c->p) {
    case '"': {
        const char *s;
        size_t n;
        return read_string(c, &s, &n);
    }
    case '{': return skip_container(c, '}');
    case '[': return skip_container(c, ']');
    case 't': return skip_literal(c, "true", 4);
    case 'f': return skip_literal(c, "false", 5);
    case 'n': return skip_literal(c, "null", 4);
    default:
        if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) return skip_number(c);
        return (unsigned char)*c->p >= 0x7f ? D_ASCII : D_SYNTAX;
    }
}

/* Iterate an object's members: calls on_key(ctx, key, n) with the cursor on the value. */
typedef int (*KeyFn)(Cursor *c, void *ctx, const char *k, size_t n);

static int each_member(Cursor *c, KeyFn on_key, void *ctx) {
    if (c->p >= c->end || *c->p != '{') return D_SHAPE;
    if (++c->depth > MAX_DEPTH) return D_DEPTH;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        c->depth--;
        return TAKEN;
    }
    for (;;) {
        const char *k;
        size_t kn;
        int r = read_string(c, &k, &kn);
        if (r) return r == D_SHAPE ? D_SYNTAX : r;
        ws(c);
        if (c->p >= c->end || *c->p != ':') return D_SYNTAX;
        c->p++;
        ws(c);
        if ((r = on_key(c, ctx, k, kn))) return r;
        ws(c);
        if (c->p >= c->end) return D_SYNTAX;
        if (*c->p == ',') {
            c->p++;
            ws(c);
            continue;
        }
        if (*c->p == '}') {
            c->p++;
            c->depth--;
            return TAKEN;
        }
        return D_SYNTAX;
    }
}

typedef int (*ItemFn)(Cursor *c, void *ctx);

static int each_item(Cursor *c, ItemFn on_item, void *ctx) {
    if (c->p >= c->end || *c->p != '[') return D_SHAPE;
    if (++c->depth > MAX_DEPTH) return D_DEPTH;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        c->depth--;
        return TAKEN;
    }
    for (;;) {
        int r = on_item(c, ctx);
        if (r) return r;
        ws(c);
        if (c->p >= c->end) return D_SYNTAX;
        if (*c->p == ',') {
            c->p++;
            ws(c);
            continue;
        }
        if (*c->p == ']') {
            c->p++;
            c->depth--;
            return TAKEN;
        }
        return D_SYNTAX;
    }
}

static inline int key_is(const char *k, size_t n, const char *name) {
    size_t m = strlen(name);
    return n == m && memcmp(k, name, m) == 0;
}

static int key_like(const char *k, size_t n, const char *name) {
    size_t m = strlen(name);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++) {
        char a = k[i], b = name[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z') b = (char)(b - 'A' + 'a');
        if (a != b) return 0;
    }
    return 1;
}

/* an unknown member: skipped, unless it is a known name in another case (the SQL reader may
 * match names without regard to case: that is for it to judge) */
static int skip_member(Cursor *c, const char *k, size_t n, const char *const *known) {
    for (; *known; known++)
        if (key_like(k, n, *known)) return D_KEY;
    return skip_value(c);
}

/* -- tuples --------------------------------------------------------------------------------- */

/* The parser relies on a NUL byte right after the blob (parse_blob's callers put it there):
 * every scanning loop below stops at a byte it does not accept, and NUL is accepted by none of
 * them, so none can run past the end. */

/* Unsigned decimal digits at p: their value (wrapping: callers refuse long runs) and the first
 * byte after them. */
static inline const char *digits_at(const char *p, uint64_t *value) {
    uint64_t v = 0;
    unsigned d;
    while ((d = (unsigned)(unsigned char)*p - '0') <= 9) {
        v = v * 10 + d;
        p++;
    }
    *value = v;
    return p;
}

/* Eight ASCII digits at p as a number, or -1 if they are not all digits. */
static inline int64_t eight_digits(const char *p) {
#ifdef SWAR
    uint64_t x;
    memcpy(&x, p, 8);
    if (((x & 0xF0F0F0F0F0F0F0F0ULL) |
         (((x + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) != 0x3333333333333333ULL)
        return -1;
    x -= 0x3030303030303030ULL;
    x = x * 10 + (x >> 8);
    x = (((x & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
         (((x >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32;
    return (int64_t)(uint32_t)x;
#else
    (void)p;
    return -1;
#endif
}

/* A field's end: the next ',' (or '"' for the last); declines bytes a string may not hold. */
static inline int field_end(const char *p, const char **out) {
    for (;;) {
        unsigned char ch = (unsigned char)*p;
        if (ch == ',' || ch == '"') {
            *out = p;
            return TAKEN;
        }
        if (ch == '\\') return D_ESCAPE;
        if (ch < 0x20) return D_SYNTAX;
        if (ch >= 0x7f) return D_ASCII;
        p++;
    }
}

/* A canonical dotted IPv4 address at p (no leading zeros, parts <= 255) followed by ',': its
 * value, and the ','; NULL for anything else (classify_address then decides). */
static inline const char *fast_ipv4(const char *p, uint32_t *ip) {
    uint32_t v = 0;
    for (int part = 0; part < 4; part++) {
        unsigned d0 = (unsigned)(unsigned char)p[0] - '0';
        if (d0 > 9) return NULL;
        uint32_t o = d0;
        unsigned d1 = (unsigned)(unsigned char)p[1] - '0';
        if (d1 > 9) {
            p += 1;
        } else {
            if (d0 == 0) return NULL;
            o = o * 10 + d1;
            unsigned d2 = (unsigned)(unsigned char)p[2] - '0';
            if (d2 > 9) {
                p += 2;
            } else {
                o = o * 10 + d2;
                if (o > 255 || (unsigned)(unsigned char)p[3] - '0' <= 9) return NULL;
                p += 3;
            }
        }
        v = v << 8 | o;
        if (*p != (part < 3 ? '.' : ',')) return NULL;
        p++;
    }
    *ip = v;
    return p - 1;
}

/* An address field [s, e): 0 and *ip for a canonical dotted IPv4 address; P_IPV6 + 1 or
 * P_BAD + 1 for the problems the SQL reader names; -D_ADDRESS for what it keeps as text
 * (dotted with leading zeros). The SQL: dotted = '[0-9]{1,3}(\.[0-9]{1,3}){3}' in full;
 * dotted and every part <= 255 is an address, else ':' in it is IPv6, else it is bad. */
static inline int classify_address(const char *s, const char *e, uint32_t *ip) {
    const char *p = s;
    uint32_t v = 0;
    int canonical = 1, over = 0;
    for (int part = 0; part < 4; part++) {
        const char *start = p;
        uint32_t o = 0;
        while (p < e && p - start < 3 && *p >= '0' && *p <= '9') o = o * 10 + (uint32_t)(*p++ - '0');
        size_t n = (size_t)(p - start);
        if (n == 0) goto not_dotted;
        if (n > 1 && *start == '0') canonical = 0;
        if (o > 255) over = 1;
        v = v << 8 | (o & 0xff);
        if (part < 3) {
            if (p >= e || *p != '.') goto not_dotted;
            p++;
        }
    }
    if (p != e) goto not_dotted;
    if (over) return P_BAD + 1;
    if (!canonical) return -D_ADDRESS;
    *ip = v;
    return 0;
not_dotted:
    return memchr(s, ':', (size_t)(e - s)) ? P_IPV6 + 1 : P_BAD + 1;
}

static void stage_problem(Stage *s, int problem, const char *addr, size_t n) {
    s->problem_tuples[problem]++;
    if (!s->problem_min[problem] ||
        bytes_less(addr, n, s->problem_min[problem], s->problem_min_len[problem])) {
        s->problem_min[problem] = addr;
        s->problem_min_len[problem] = n;
    }
}

typedef struct {
    uint32_t group;
    uint32_t last_enc; /* the id of the last encryption text seen, and that text */
    const char *last_enc_s;
    size_t last_enc_n;
    /* direct: the record's MAC, flow log and target, the flow's ACL and the group's rule were
     * all read before the tuples (the order Azure writes them in), so each tuple goes straight
     * into the per-blob table; otherwise tuples are staged until they are known */
    int direct;
    uint64_t k1; /* mac | acl << 32 */
    uint32_t rule, flowlog, target;
} TupleCtx;

static inline int64_t sat_add(int64_t a, int64_t b, int64_t *saturated);

/* One good tuple into the per-blob table. */
static inline int aggregate(State *st, int64_t ts, uint64_t k1, uint32_t rule, uint32_t src,
                            uint32_t dst, uint32_t dport, uint32_t proto, uint32_t inbound,
                            uint8_t state, uint32_t enc, uint32_t flowlog, uint32_t target,
                            const int64_t c[4]) {
    uint8_t denied = state == 'D';
    uint64_t k[4] = {
        (uint64_t)(ts / st->interval_ms * st->interval_ms),
        k1,
        (uint64_t)rule | (uint64_t)src << 32,
        (uint64_t)dst | (uint64_t)dport << 32 | (uint64_t)proto << 48 |
            (uint64_t)(inbound | (uint32_t)denied << 1) << 56,
    };
    int created;
    Entry *e = flows_upsert(&st->local, k, key_hash(k), &created);
    if (!e) return ERR_NOMEM;
    if (created) {
        e->enc = enc;
        e->flowlog = flowlog;
        e->target = target;
    } else {
        if (enc != e->enc && strings_less(&st->strings, enc, e->enc)) e->enc = enc;
        if (flowlog != e->flowlog && strings_less(&st->strings, flowlog, e->flowlog))
            e->flowlog = flowlog;
        if (target != e->target && strings_less(&st->strings, target, e->target))
            e->target = target;
    }
    if (ts < e->first_ms) e->first_ms = ts;
    if (ts > e->last_ms) e->last_ms = ts;
    if (state == 'B' || denied) {
        if (ts < e->first_bd) e->first_bd = ts;
        if (ts > e->last_bd) e->last_bd = ts;
    }
    e->begun += state == 'B';
    e->refused += denied;
    e->ended += state == 'E';
    e->tuples++;
    for (int j = 0; j < 4; j++) e->c[j] = sat_add(e->c[j], c[j], &st->saturated);
    return 0;
}

/* An address field at p: a canonical address (*ip, returns 0), a problem the SQL reader names
 * (P_IPV6 + 1 or P_BAD + 1), or a decline (< 0); *end is on the ',' after it. */
static inline int read_address(const char *p, uint32_t *ip, const char **end) {
    const char *q = fast_ipv4(p, ip);
    if (q) {
        *end = q;
        return 0;
    }
    int r = field_end(p, &q);
    if (r) return -r;
    if (*q != ',' || q == p) return -D_TUPLE; /* a missing address, or too few fields */
    *end = q;
    return classify_address(p, q, ip);
}

/* digits for a port or protocol: 1 to 9 of them, at most `max`, then a ',' */
static inline const char *small_number(const char *p, uint64_t max, uint64_t *value) {
    const char *q = digits_at(p, value);
    size_t n = (size_t)(q - p);
    if (n == 0 || n > 9 || *value > max || *q != ',') return NULL;
    return q + 1;
}

/* One tuple string; the cursor is on its opening quote. */
static int read_tuple(Cursor *c, void *vctx) {
    TupleCtx *ctx = vctx;
    State *st = c->st;
    Stage *sg = &st->stage;
    const char *p = c->p;
    if (*p != '"') return D_SHAPE;
    p++;
    uint64_t ts_raw;
    const char *q;
    int64_t head = c->end - p >= 16 ? eight_digits(p) : -1; /* a timestamp has 10 or 13 */
    if (head >= 0) {
        static const uint64_t POW10[11] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                           100000000, 1000000000, 10000000000ULL};
        q = digits_at(p + 8, &ts_raw);
        size_t rest = (size_t)(q - p - 8);
        /* a longer run is refused by the length check below, whatever it adds up to */
        ts_raw += (uint64_t)head * POW10[rest < 10 ? rest : 10];
    } else {
        q = digits_at(p, &ts_raw);
    }
    size_t nd = (size_t)(q - p);
    if (nd == 0 || nd > 18 || *q != ',') return D_TUPLE;
    int64_t ts = nd > 11 ? (int64_t)ts_raw : (int64_t)ts_raw * 1000;
    if (ts < st->min_ms || ts > st->max_ms) return D_TUPLE;
    const char *s0 = q + 1, *s1, *d0, *d1;
    uint32_t src = 0, dst = 0;
    int a = read_address(s0, &src, &s1);
    if (a < 0) return -a;
    d0 = s1 + 1;
    int b = read_address(d0, &dst, &d1);
    if (b < 0) return -b;
    uint64_t sport, dport, proto;
    if (!(p = small_number(d1 + 1, 65535, &sport))) return D_TUPLE;
    if (!(p = small_number(p, 65535, &dport))) return D_TUPLE;
    if (!(p = small_number(p, 255, &proto))) return D_TUPLE;
    if ((p[0] != 'I' && p[0] != 'O') || p[1] != ',') return D_TUPLE;
    uint8_t inbound = p[0] == 'I';
    p += 2;
    if ((p[0] != 'B' && p[0] != 'C' && p[0] != 'E' && p[0] != 'D') || p[1] != ',') return D_TUPLE;
    uint8_t state = (uint8_t)p[0];
    p += 2;
    const char *e0 = p, *e1;
    int r = field_end(p, &e1);
    if (r) return r;
    if (*e1 != ',') return D_TUPLE;
    p = e1 + 1;
    int64_t cv[4];
    for (int i = 0; i < 4; i++) {
        uint64_t v;
        q = digits_at(p, &v);
        if (q - p > 15) return D_TUPLE;
        if (*q != (i < 3 ? ',' : '"')) return *q == '\\' ? D_ESCAPE : D_TUPLE;
        cv[i] = (int64_t)v;
        p = q + 1;
    }
    c->p = p;
    /* the tuple is good; its addresses decide whether it is aggregated or a counted problem */
    if (a || b) {
        if (a) stage_problem(sg, a - 1, s0, (size_t)(s1 - s0));
        else stage_problem(sg, b - 1, d0, (size_t)(d1 - d0));
        return TAKEN;
    }
    uint32_t enc;
    size_t en = (size_t)(e1 - e0);
    if (ctx->last_enc_s && ctx->last_enc_n == en && memcmp(ctx->last_enc_s, e0, en) == 0) {
        enc = ctx->last_enc;
    } else {
        if (strings_intern(&st->strings, e0, en, &enc)) return ERR_NOMEM;
        ctx->last_enc = enc;
        ctx->last_enc_s = e0;
        ctx->last_enc_n = en;
    }
    if (ctx->direct) {
        sg->direct++;
        return aggregate(st, ts, ctx->k1, ctx->rule, src, dst, (uint32_t)dport, (uint32_t)proto,
                         inbound, state, enc, ctx->flowlog, ctx->target, cv);
    }
    GROW(sg->tup, sg->ntup, sg->captup, 1024);
    StagedTuple *t = &sg->tup[sg->ntup++];
    t->ts = ts;
    memcpy(t->c, cv, sizeof t->c);
    t->src = src;
    t->dst = dst;
    t->group = ctx->group;
    t->enc = enc;
    t->dport = (uint16_t)dport;
    t->proto = (uint8_t)proto;
    t->state = state;
    t->inbound = inbound;
    return TAKEN;
}

/* -- the document ----------------------------------------------------------------------------- */

typedef struct {
    uint32_t record; /* index into the stage's records */
    uint32_t acl;
    int have_acl, have_groups;
} FlowCtx;

typedef struct {
    uint32_t group;
    int have_tuples;
    int64_t tuples_before;
} GroupCtx;

static const char *const GROUP_KEYS[] = {"rule", "flowTuples", NULL};
static const char *const FLOW_KEYS[] = {"aclID", "flowGroups", NULL};
static const char *const FLOW_RECORDS_KEYS[] = {"flows", NULL};
static const char *const RECORD_KEYS[] = {"flowLogVersion", "macAddress", "flowLogResourceID",
                                          "targetResourceID", "flowRecords", NULL};
static const char *const TOP_KEYS[] = {"records", NULL};

static int flow_group_member(Cursor *c, void *vctx, const char *k, size_t n) {
    GroupCtx *g = vctx;
    Stage *sg = &c->st->stage;
    StagedGroup *grp = &sg->grp[g->group];
    if (key_is(k, n, "rule")) {
        if (grp->have & 2) return D_KEY;
        const char *s;
        size_t sn;
        int r = read_string(c, &s, &sn);
        if (r) return r;
        uint32_t id;
        if (strings_intern(&c->st->strings, s, sn, &id)) return ERR_NOMEM;
        sg->grp[g->group].rule = id;
        sg->grp[g->group].have |= 2;
        return TAKEN;
    }
    if (key_is(k, n, "flowTuples")) {
        if (g->have_tuples) return D_KEY;
        g->have_tuples = 1;
        TupleCtx t = {.group = g->group};
        const StagedGroup *grp2 = &sg->grp[g->group];
        const StagedRecord *rec = &sg->rec[grp2->record];
        if ((grp2->have & 3) == 3 && (rec->have & 7) == 7) {
            t.direct = 1;
            t.k1 = (uint64_t)rec->mac | (uint64_t)grp2->acl << 32;
            t.rule = grp2->rule;
            t.flowlog = rec->flowlog;
            t.target = rec->target;
        }
        return each_item(c, read_tuple, &t);
    }
    return skip_member(c, k, n, GROUP_KEYS);
}

static int read_group(Cursor *c, void *vctx) {
    FlowCtx *f = vctx;
    Stage *sg = &c->st->stage;
    GROW(sg->grp, sg->ngrp, sg->capgrp, 64);
    uint32_t gi = (uint32_t)sg->ngrp++;
    sg->grp[gi].record = f->record;
    sg->grp[gi].acl = f->have_acl ? f->acl : 0; /* else set when the flow ends */
    sg->grp[gi].rule = 0;
    sg->grp[gi].have = f->have_acl ? 1 : 0;
    GroupCtx g = {.group = gi};
    int r = each_member(c, flow_group_member, &g);
    if (r) return r;
    if (!(sg->grp[gi].have & 2) || !g.have_tuples) return D_SHAPE;
    return TAKEN;
}

/* a flow's groups may come before its aclID: they take it when the flow ends */
typedef struct {
    FlowCtx f;
    size_t first_group;
} FlowState;

static int flow_member(Cursor *c, void *vctx, const char *k, size_t n) {
    FlowState *fs = vctx;
    if (key_is(k, n, "aclID")) {
        if (fs->f.have_acl) return D_KEY;
        const char *s;
        size_t sn;
        int r = read_string(c, &s, &sn);
        if (r) return r;
        if (strings_intern(&c->st->strings, s, sn, &fs->f.acl)) return ERR_NOMEM;
        fs->f.have_acl = 1;
        return TAKEN;
    }
    if (key_is(k, n, "flowGroups")) {
        if (fs->f.have_groups) return D_KEY;
        fs->f.have_groups = 1;
        return each_item(c, read_group, &fs->f);
    }
    return skip_member(c, k, n, FLOW_KEYS);
}

static int read_flow(Cursor *c, void *vctx) {
    uint32_t record = *(uint32_t *)vctx;
    Stage *sg = &c->st->stage;
    FlowState fs = {.f = {.record = record}, .first_group = sg->ngrp};
    int r = each_member(c, flow_member, &fs);
    if (r) return r;
    if (!fs.f.have_acl || !fs.f.have_groups) return D_SHAPE;
    for (size_t i = fs.first_group; i < sg->ngrp; i++) sg->grp[i].acl = fs.f.acl;
    return TAKEN;
}

typedef struct {
    uint32_t record;
    int have_flows;
} FlowRecordsCtx;

static int flow_records_member(Cursor *c, void *vctx, const char *k, size_t n) {
    FlowRecordsCtx *fr = vctx;
    if (key_is(k, n, "flows")) {
        if (fr->have_flows) return D_KEY;
        fr->have_flows = 1;
        return each_item(c, read_flow, &fr->record);
    }
    return skip_member(c, k, n, FLOW_RECORDS_KEYS);
}

typedef struct {
    uint32_t record;
    int have_flow_records;
} RecordCtx;

static int record_string(Cursor *c, uint32_t record, uint8_t bit, size_t field) {
    Stage *sg = &c->st->stage;
    if (sg->rec[record].have & bit) return D_KEY;
    const char *s;
    size_t sn;
    int r = read_string(c, &s, &sn);
    if (r) return r;
    uint32_t id;
    if (sg->last_s[field] && sg->last_n[field] == sn && memcmp(sg->last_s[field], s, sn) == 0) {
        id = sg->last_id[field];
    } else {
        if (strings_intern(&c->st->strings, s, sn, &id)) return ERR_NOMEM;
        sg->last_s[field] = s;
        sg->last_n[field] = sn;
        sg->last_id[field] = id;
    }
    StagedRecord *rec = &sg->rec[record];
    if (field == 0) rec->mac = id;
    else if (field == 1) rec->flowlog = id;
    else rec->target = id;
    rec->have |= bit;
    return TAKEN;
}

static int record_member(Cursor *c, void *vctx, const char *k, size_t n) {
    RecordCtx *rc = vctx;
    Stage *sg = &c->st->stage;
    if (key_is(k, n, "flowLogVersion")) {
        if (sg->rec[rc->record].have & 8) return D_KEY;
        /* 4 or "4" (the SQL reader's flowLogVersion IN ('4', '"4"')) */
        if (c->end - c->p >= 1 && c->p[0] == '4' &&
            (c->end - c->p == 1 || !((c->p[1] >= '0' && c->p[1] <= '9') || c->p[1] == '.' ||
                                     c->p[1] == 'e' || c->p[1] == 'E'))) {
            c->p += 1;
        } else if (c->end - c->p >= 3 && memcmp(c->p, "\"4\"", 3) == 0) {
            c->p += 3;
        } else {
            return D_VERSION;
        }
        sg->rec[rc->record].have |= 8;
        return TAKEN;
    }
    if (key_is(k, n, "macAddress")) return record_string(c, rc->record, 1, 0);
    if (key_is(k, n, "flowLogResourceID")) return record_string(c, rc->record, 2, 1);
    if (key_is(k, n, "targetResourceID")) return record_string(c, rc->record, 4, 2);
    if (key_is(k, n, "flowRecords")) {
        if (rc->have_flow_records) return D_KEY;
        rc->have_flow_records = 1;
        FlowRecordsCtx fr = {.record = rc->record};
        int r = each_member(c, flow_records_member, &fr);
        if (r) return r;
        return fr.have_flows ? TAKEN : D_SHAPE;
    }
    return skip_member(c, k, n, RECORD_KEYS);
}

static int read_record(Cursor *c, void *vctx) {
    (void)vctx;
    Stage *sg = &c->st->stage;
    GROW(sg->rec, sg->nrec, sg->caprec, 64);
    uint32_t ri = (uint32_t)sg->nrec++;
    memset(&sg->rec[ri], 0, sizeof sg->rec[ri]);
    RecordCtx rc = {.record = ri};
    int r = each_member(c, record_member, &rc);
    if (r) return r;
    if (!(sg->rec[ri].have & 8)) return D_VERSION;
    if (sg->rec[ri].have != 15 || !rc.have_flow_records) return D_SHAPE;
    sg->records++;
    return TAKEN;
}

typedef struct {
    int have_records;
} TopCtx;

static int top_member(Cursor *c, void *vctx, const char *k, size_t n) {
    TopCtx *t = vctx;
    if (key_is(k, n, "records")) {
        if (t->have_records) return D_KEY;
        t->have_records = 1;
        return each_item(c, read_record, NULL);
    }
    return skip_member(c, k, n, TOP_KEYS);
}

/* Parse one blob into the stage: TAKEN, a decline reason, or ERR_NOMEM. data[n] must be NUL
 * (the sentinel the tuple parser relies on). */
static int parse_blob_inner(State *st, const char *data, size_t n);

/* Parse one blob into the stage: TAKEN, a decline reason, or ERR_NOMEM; a declined blob's
 * strings are forgotten (nothing of it stays: the per-blob table is reset at the next blob). */
static int parse_blob(State *st, const char *data, size_t n) {
    stage_reset(&st->stage);
    st->stage.bytes = (int64_t)n;
    st->stage.strings_mark = st->strings.count;
    st->stage.arena_mark = st->strings.arena_len;
    int r = parse_blob_inner(st, data, n);
    if (r != TAKEN) strings_truncate(&st->strings, st->stage.strings_mark, st->stage.arena_mark);
    return r;
}

static int parse_blob_inner(State *st, const char *data, size_t n) {
    flows_reset(&st->local); /* direct tuples land here as they are read */
    Cursor c = {.p = data, .end = data + n, .st = st, .depth = 0};
    ws(&c);
    TopCtx top = {0};
    int r = each_member(&c, top_member, &top);
    if (r) return r;
    ws(&c);
    if (c.p != c.end) return c.p < c.end && (unsigned char)*c.p >= 0x7f ? D_ASCII : D_SYNTAX;
    if (!top.have_records) return D_SHAPE;
    if (st->stage.ntup == 0 && st->stage.direct == 0 && st->stage.problem_tuples[P_IPV6] == 0 &&
        st->stage.problem_tuples[P_BAD] == 0)
        return D_EMPTY;
    return TAKEN;
}

static int set_problem_example(Problem *p, const char *s, size_t n) {
    if (p->example && !bytes_less(s, n, p->example, p->example_len)) return 0;
    char *copy = malloc(n + 1);
    if (!copy) return ERR_NOMEM;
    memcpy(copy, s, n);
    copy[n] = '\0';
    free(p->example);
    p->example = copy;
    p->example_len = n;
    return 0;
}

/* e += o (o's string ids already st's). */
static void merge_entry(State *st, Entry *e, const Entry *o) {
    if (o->enc != e->enc && strings_less(&st->strings, o->enc, e->enc)) e->enc = o->enc;
    if (o->flowlog != e->flowlog && strings_less(&st->strings, o->flowlog, e->flowlog))
        e->flowlog = o->flowlog;
    if (o->target != e->target && strings_less(&st->strings, o->target, e->target))
        e->target = o->target;
    if (o->first_ms < e->first_ms) e->first_ms = o->first_ms;
    if (o->last_ms > e->last_ms) e->last_ms = o->last_ms;
    if (o->first_bd < e->first_bd) e->first_bd = o->first_bd;
    if (o->last_bd > e->last_bd) e->last_bd = o->last_bd;
    e->begun += o->begun;
    e->refused += o->refused;
    e->ended += o->ended;
    e->tuples += o->tuples;
    for (int i = 0; i < 4; i++) e->c[i] = sat_add(e->c[i], o->c[i], &st->saturated);
}

/* Fold the staged blob into the aggregates: its tuples by key in the per-blob table, then its
 * entries onto the rows (noting a (MAC, interval) another blob had). */
static int commit_blob(State *st) {
    Stage *sg = &st->stage;
    for (int i = 0; i < P_COUNT; i++) {
        if (!sg->problem_tuples[i]) continue;
        if (set_problem_example(&st->problems[i], sg->problem_min[i], sg->problem_min_len[i]))
            return ERR_NOMEM;
        st->problems[i].tuples += sg->problem_tuples[i];
    }
    const int64_t interval = st->interval_ms;
    Flows *local = &st->local;
    for (size_t i = 0; i < sg->ntup; i++) { /* the staged tuples (the direct ones are in) */
        const StagedTuple *t = &sg->tup[i];
        const StagedGroup *g = &sg->grp[t->group];
        const StagedRecord *rec = &sg->rec[g->record];
        if (aggregate(st, t->ts, (uint64_t)rec->mac | (uint64_t)g->acl << 32, g->rule, t->src,
                      t->dst, t->dport, t->proto, t->inbound, t->state, t->enc, rec->flowlog,
                      rec->target, t->c))
            return ERR_NOMEM;
    }
    uint32_t blob = ++st->blob_seq;
    if (blob == 0) st->always_merge = 1; /* 2^32 blobs: stop trusting the pair registry */
    uint64_t last_pair = UINT64_MAX;
    for (uint32_t j = 0; j < local->count; j++) {
        const Entry *e = &local->e[j];
        uint64_t pair = (uint64_t)(uint32_t)e->k[1] << 32 |
                        (uint32_t)((int64_t)e->k[0] / interval);
        if (pair == last_pair) continue;
        last_pair = pair;
        int other;
        if (pairs_see(&st->pairs, pair, blob ? blob : 1, &other)) return ERR_NOMEM;
        st->collide |= other;
    }
    if (rows_append(&st->rows, local->e, local->count)) return ERR_NOMEM;
    st->blobs++;
    st->bytes += sg->bytes;
    st->records += sg->records;
    st->tuples += (int64_t)sg->ntup + sg->direct + sg->problem_tuples[P_IPV6] +
                  sg->problem_tuples[P_BAD];
    return 0;
}

/* `rows` with every repeated key merged into one (string ids are st's). */
static int merge_rows_of(State *st, Rows *rows) {
    Flows t;
    if (flows_init(&t, 1024) || flows_reserve(&t, rows->count)) {
        flows_free(&t);
        return ERR_NOMEM;
    }
    for (size_t j = 0; j < rows->count; j++) {
        const Entry *o = &rows->e[j];
        int created;
        Entry *e = flows_upsert(&t, o->k, key_hash(o->k), &created);
        if (!e) {
            flows_free(&t);
            return ERR_NOMEM;
        }
        if (created) *e = *o;
        else merge_entry(st, e, o);
    }
    free(rows->e);
    rows->e = t.e;
    rows->count = t.count;
    rows->cap = t.cap;
    free(t.slots);
    return 0;
}

/* The scanner's rows with every repeated key merged into one (when they may repeat). */
static int merge_rows(State *st) {
    if (!st->collide && !st->always_merge) return 0;
    if (merge_rows_of(st, &st->rows)) return ERR_NOMEM;
    st->collide = 0;
    return 0;
}

/* other's rows appended to `rows`, their string ids mapped into st's through `map`. */
static int append_mapped(Rows *rows, const State *other, const uint32_t *map) {
    size_t at = rows->count;
    if (rows_append(rows, other->rows.e, other->rows.count)) return ERR_NOMEM;
    for (size_t j = at; j < rows->count; j++) {
        Entry *e = &rows->e[j];
        e->k[1] = (uint64_t)map[(uint32_t)e->k[1]] | (uint64_t)map[(uint32_t)(e->k[1] >> 32)] << 32;
        e->k[2] = (uint64_t)map[(uint32_t)e->k[2]] | (e->k[2] & 0xffffffff00000000ULL);
        e->enc = map[e->enc];
        e->flowlog = map[e->flowlog];
        e->target = map[e->target];
    }
    return 0;
}

/* Fold `other` into `st`: its strings re-interned, its rows appended (merged by key when they
 * leave: see merge_rows). */
static uint32_t *remap_strings(State *st, const State *other);

static int merge_state(State *st, const State *other) {
    uint32_t *map = remap_strings(st, other);
    if (!map) return ERR_NOMEM;
    int r = append_mapped(&st->rows, other, map);
    free(map);
    if (r) return ERR_NOMEM;
    st->always_merge = 1;
    for (int i = 0; i < P_COUNT; i++) {
        const Problem *p = &other->problems[i];
        if (!p->tuples) continue;
        if (set_problem_example(&st->problems[i], p->example, p->example_len)) return ERR_NOMEM;
        st->problems[i].tuples += p->tuples;
    }
    st->blobs += other->blobs;
    st->records += other->records;
    st->tuples += other->tuples;
    st->saturated += other->saturated;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Arrow export: the flows as column buffers, scanned in place through the C stream interface  */

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};

#define ARROW_FLAG_NULLABLE 2

typedef struct {
    const char *name;
    const char *format; /* "l" int64, "i" int32, "c" int8 */
    int nullable;
} ColumnSpec;

enum {
    C_INTERVAL, C_MAC, C_ACL, C_RULE, C_SRC, C_DST, C_DPORT, C_PROTO, C_INBOUND, C_DENIED,
    C_ENC, C_FLOWLOG, C_TARGET, C_FIRST, C_LAST, C_FIRST_BD, C_LAST_BD, C_BEGUN, C_REFUSED,
    C_ENDED, C_PKTS_S2D, C_BYTES_S2D, C_PKTS_D2S, C_BYTES_D2S, C_TUPLES, NCOLS
};

static const ColumnSpec COLUMNS[NCOLS] = {
    {"interval_ms", "l", 0}, {"mac", "i", 0}, {"acl", "i", 0}, {"rule", "i", 0},
    {"src", "l", 0}, {"dst", "l", 0}, {"dport", "i", 0}, {"proto", "i", 0},
    {"inbound", "c", 0}, {"denied", "c", 0}, {"enc", "i", 0}, {"flowlog", "i", 0},
    {"target", "i", 0}, {"first_ms", "l", 0}, {"last_ms", "l", 0}, {"first_bd", "l", 1},
    {"last_bd", "l", 1}, {"begun", "l", 0}, {"refused", "l", 0}, {"ended", "l", 0},
    {"pkts_s2d", "l", 0}, {"bytes_s2d", "l", 0}, {"pkts_d2s", "l", 0}, {"bytes_d2s", "l", 0},
    {"tuples", "l", 0},
};

#define BATCH_ROWS 122880 /* DuckDB's row group size; a multiple of 8 (validity bytes) */

typedef struct {
    atomic_long refs; /* the Python object and every open stream */
    int64_t rows;
    void *col[NCOLS];
    uint8_t *valid[NCOLS]; /* validity bitmaps of the nullable columns (bit set = value) */
    int64_t nulls[NCOLS];
} Export;

static void export_unref(Export *x) {
    if (atomic_fetch_sub(&x->refs, 1) != 1) return;
    for (int i = 0; i < NCOLS; i++) {
        free(x->col[i]);
        free(x->valid[i]);
    }
    free(x);
}

static Export *export_alloc(int64_t n) {
    Export *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    atomic_init(&x->refs, 1);
    x->rows = n;
    size_t rows = n ? (size_t)n : 1;
    for (int i = 0; i < NCOLS; i++) {
        size_t width = COLUMNS[i].format[0] == 'l' ? 8 : COLUMNS[i].format[0] == 'i' ? 4 : 1;
        x->col[i] = malloc(rows * width);
        if (!x->col[i]) goto fail;
        if (COLUMNS[i].nullable) {
            x->valid[i] = calloc((rows + 7) / 8, 1);
            if (!x->valid[i]) goto fail;
        }
    }
    return x;
fail:
    for (int i = 0; i < NCOLS; i++) {
        free(x->col[i]);
        free(x->valid[i]);
    }
    free(x);
    return NULL;
}

/* Rows [at, at + count) of x: `rows`, string ids through map (NULL: as they are). */
static void export_fill(Export *x, int64_t at, const Rows *rows, const uint32_t *map) {
    int64_t n = (int64_t)rows->count;
#define ID(v) ((int32_t)(map ? map[(uint32_t)(v)] : (uint32_t)(v)))
    for (int64_t j = 0; j < n; j++) {
        const Entry *e = &rows->e[j];
        int64_t r = at + j;
        ((int64_t *)x->col[C_INTERVAL])[r] = (int64_t)e->k[0];
        ((int32_t *)x->col[C_MAC])[r] = ID(e->k[1]);
        ((int32_t *)x->col[C_ACL])[r] = ID(e->k[1] >> 32);
        ((int32_t *)x->col[C_RULE])[r] = ID(e->k[2]);
        ((int64_t *)x->col[C_SRC])[r] = (int64_t)(e->k[2] >> 32);
        ((int64_t *)x->col[C_DST])[r] = (int64_t)(uint32_t)e->k[3];
        ((int32_t *)x->col[C_DPORT])[r] = (int32_t)((e->k[3] >> 32) & 0xffff);
        ((int32_t *)x->col[C_PROTO])[r] = (int32_t)((e->k[3] >> 48) & 0xff);
        ((int8_t *)x->col[C_INBOUND])[r] = (int8_t)((e->k[3] >> 56) & 1);
        ((int8_t *)x->col[C_DENIED])[r] = (int8_t)((e->k[3] >> 57) & 1);
        ((int32_t *)x->col[C_ENC])[r] = ID(e->enc);
        ((int32_t *)x->col[C_FLOWLOG])[r] = ID(e->flowlog);
        ((int32_t *)x->col[C_TARGET])[r] = ID(e->target);
        ((int64_t *)x->col[C_FIRST])[r] = e->first_ms;
        ((int64_t *)x->col[C_LAST])[r] = e->last_ms;
        int has_bd = e->first_bd != NO_BD_FIRST;
        ((int64_t *)x->col[C_FIRST_BD])[r] = has_bd ? e->first_bd : 0;
        ((int64_t *)x->col[C_LAST_BD])[r] = has_bd ? e->last_bd : 0;
        if (has_bd) {
            x->valid[C_FIRST_BD][r >> 3] |= (uint8_t)(1u << (r & 7));
            x->valid[C_LAST_BD][r >> 3] |= (uint8_t)(1u << (r & 7));
        } else {
            x->nulls[C_FIRST_BD]++;
            x->nulls[C_LAST_BD]++;
        }
        ((int64_t *)x->col[C_BEGUN])[r] = e->begun;
        ((int64_t *)x->col[C_REFUSED])[r] = e->refused;
        ((int64_t *)x->col[C_ENDED])[r] = e->ended;
        ((int64_t *)x->col[C_PKTS_S2D])[r] = e->c[0];
        ((int64_t *)x->col[C_BYTES_S2D])[r] = e->c[1];
        ((int64_t *)x->col[C_PKTS_D2S])[r] = e->c[2];
        ((int64_t *)x->col[C_BYTES_D2S])[r] = e->c[3];
        ((int64_t *)x->col[C_TUPLES])[r] = e->tuples;
    }
#undef ID
}

/* A bitmap (one byte per string id of st) of the MAC ids its flows use. */
static uint8_t *mac_ids(const State *st) {
    uint8_t *used = calloc(st->strings.count ? st->strings.count : 1, 1);
    if (!used) return NULL;
    for (size_t j = 0; j < st->rows.count; j++) used[(uint32_t)st->rows.e[j].k[1]] = 1;
    return used;
}

/* The id map of other's strings in st (interning them there). */
static uint32_t *remap_strings(State *st, const State *other) {
    uint32_t *map = malloc((other->strings.count ? other->strings.count : 1) * sizeof *map);
    if (!map) return NULL;
    for (uint32_t i = 0; i < other->strings.count; i++) {
        if (strings_intern(&st->strings, strings_at(&other->strings, i), other->strings.len[i],
                           &map[i])) {
            free(map);
            return NULL;
        }
    }
    return map;
}

/* The flows of st and others[0..n) in one export. Scanners whose flows share no MAC cannot
 * share a key (the MAC is part of it): their rows are concatenated, with the others' string ids
 * mapped into st's. Otherwise the others are merged into st first (exact, slower). Returns NULL
 * when out of memory; *merged says which way it went. */
static Export *export_combined(State *st, State *const *others, int n, int *merged) {
    *merged = 0;
    uint32_t **maps = calloc(n ? (size_t)n : 1, sizeof *maps);
    uint8_t *seen = NULL;
    Export *x = NULL;
    if (!maps) return NULL;
    if (merge_rows(st)) goto done;
    for (int i = 0; i < n; i++) {
        if (merge_rows(others[i])) goto done;
        if (!(maps[i] = remap_strings(st, others[i]))) goto done;
    }
    seen = mac_ids(st); /* sized for st's strings after the remaps: every id fits */
    if (!seen) goto done;
    for (int i = 0; i < n && !*merged; i++) {
        uint8_t *theirs = mac_ids(others[i]);
        if (!theirs) goto done;
        for (uint32_t id = 0; id < others[i]->strings.count; id++) {
            if (!theirs[id]) continue;
            if (seen[maps[i][id]]) {
                *merged = 1;
                break;
            }
            seen[maps[i][id]] = 1;
        }
        free(theirs);
    }
    if (*merged) { /* into a copy: the Scanners keep their own rows and counts */
        Rows all = {0};
        int failed = rows_append(&all, st->rows.e, st->rows.count);
        for (int i = 0; i < n && !failed; i++) failed = append_mapped(&all, others[i], maps[i]);
        if (!failed) failed = merge_rows_of(st, &all);
        if (!failed && (x = export_alloc((int64_t)all.count))) export_fill(x, 0, &all, NULL);
        free(all.e);
        goto done;
    }
    int64_t total = (int64_t)st->rows.count;
    for (int i = 0; i < n; i++) total += (int64_t)others[i]->rows.count;
    x = export_alloc(total);
    if (!x) goto done;
    int64_t at = 0;
    export_fill(x, at, &st->rows, NULL);
    at += (int64_t)st->rows.count;
    for (int i = 0; i < n; i++) {
        export_fill(x, at, &others[i]->rows, maps[i]);
        at += (int64_t)others[i]->rows.count;
    }
done:
    for (int i = 0; i < n; i++) free(maps[i]);
    free(maps);
    free(seen);
    return x;
}

typedef struct {
    Export *x;
    int64_t next; /* first row of the next batch */
} StreamState;

static void release_child_schema(struct ArrowSchema *s) { s->release = NULL; }

static void release_schema(struct ArrowSchema *s) {
    for (int64_t i = 0; i < s->n_children; i++) {
        if (s->children[i]->release) s->children[i]->release(s->children[i]);
    }
    free(s->private_data); /* the children, allocated in one block with their pointers */
    s->release = NULL;
}

static int stream_get_schema(struct ArrowArrayStream *stream, struct ArrowSchema *out) {
    (void)stream;
    /* one allocation: NCOLS child pointers, then NCOLS children */
    void *block = calloc(1, NCOLS * (sizeof(struct ArrowSchema *) + sizeof(struct ArrowSchema)));
    if (!block) return 12; /* ENOMEM */
    struct ArrowSchema **ptrs = block;
    struct ArrowSchema *kids = (struct ArrowSchema *)(ptrs + NCOLS);
    for (int i = 0; i < NCOLS; i++) {
        kids[i].format = COLUMNS[i].format;
        kids[i].name = COLUMNS[i].name;
        kids[i].flags = COLUMNS[i].nullable ? ARROW_FLAG_NULLABLE : 0;
        kids[i].release = release_child_schema;
        ptrs[i] = &kids[i];
    }
    memset(out, 0, sizeof *out);
    out->format = "+s";
    out->name = "";
    out->n_children = NCOLS;
    out->children = ptrs;
    out->release = release_schema;
    out->private_data = block;
    return 0;
}

/* A column of a batch: its own buffer pointers and its own reference to the export, so that a
 * consumer may move it out of the batch and release the batch first (the Arrow C data
 * interface allows it). */
typedef struct {
    Export *x;
    const void *bufs[2];
} Child;

static void release_child_array(struct ArrowArray *a) {
    Child *c = a->private_data;
    if (c) {
        export_unref(c->x);
        free(c);
    }
    a->private_data = NULL;
    a->release = NULL;
}

typedef struct {
    Export *x;
    struct ArrowArray *ptrs[NCOLS];
    struct ArrowArray kids[NCOLS];
    const void *struct_bufs[1];
} Batch;

static void release_array(struct ArrowArray *a) {
    Batch *b = a->private_data;
    for (int i = 0; i < NCOLS; i++) {
        if (b->kids[i].release) b->kids[i].release(&b->kids[i]);
    }
    export_unref(b->x);
    free(b);
    a->release = NULL;
}

static int stream_get_next(struct ArrowArrayStream *stream, struct ArrowArray *out) {
    StreamState *s = stream->private_data;
    Export *x = s->x;
    memset(out, 0, sizeof *out);
    if (s->next >= x->rows) return 0; /* released array: the end of the stream */
    int64_t start = s->next;
    int64_t n = x->rows - start < BATCH_ROWS ? x->rows - start : BATCH_ROWS;
    Batch *b = calloc(1, sizeof *b);
    if (!b) return 12;
    Child *children[NCOLS];
    for (int i = 0; i < NCOLS; i++) {
        if (!(children[i] = calloc(1, sizeof(Child)))) {
            while (i--) free(children[i]);
            free(b);
            return 12;
        }
    }
    b->x = x;
    atomic_fetch_add(&x->refs, 1);
    for (int i = 0; i < NCOLS; i++) {
        size_t width = COLUMNS[i].format[0] == 'l' ? 8 : COLUMNS[i].format[0] == 'i' ? 4 : 1;
        struct ArrowArray *k = &b->kids[i];
        Child *c = children[i];
        int64_t nulls = 0;
        if (x->valid[i]) {
            for (int64_t r = start; r < start + n; r++)
                nulls += !(x->valid[i][r >> 3] & (1u << (r & 7)));
        }
        c->x = x;
        atomic_fetch_add(&x->refs, 1);
        c->bufs[0] = (x->valid[i] && nulls) ? x->valid[i] + start / 8 : NULL;
        c->bufs[1] = (const char *)x->col[i] + (size_t)start * width;
        k->length = n;
        k->null_count = nulls;
        k->offset = 0;
        k->n_buffers = 2;
        k->buffers = c->bufs;
        k->release = release_child_array;
        k->private_data = c;
        b->ptrs[i] = k;
    }
    b->struct_bufs[0] = NULL;
    out->length = n;
    out->null_count = 0;
    out->offset = 0;
    out->n_buffers = 1;
    out->buffers = b->struct_bufs;
    out->n_children = NCOLS;
    out->children = b->ptrs;
    out->release = release_array;
    out->private_data = b;
    s->next = start + n;
    return 0;
}

static const char *stream_last_error(struct ArrowArrayStream *stream) {
    (void)stream;
    return "out of memory";
}

static void stream_release(struct ArrowArrayStream *stream) {
    StreamState *s = stream->private_data;
    if (s) {
        export_unref(s->x);
        free(s);
    }
    stream->release = NULL;
}

static void stream_capsule_destructor(PyObject *capsule) {
    struct ArrowArrayStream *stream = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (!stream) {
        PyErr_Clear();
        return;
    }
    if (stream->release) stream->release(stream);
    free(stream);
}

/* ------------------------------------------------------------------------------------------ */
/* Python: FlowTable (the exported flows) and Scanner                                          */

typedef struct {
    PyObject_HEAD
    Export *x;
    int merged; /* the Scanners' flows shared a MAC and were merged (see export_combined) */
} FlowTableObject;

static void flowtable_dealloc(FlowTableObject *self) {
    if (self->x) export_unref(self->x);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t flowtable_len(FlowTableObject *self) { return (Py_ssize_t)self->x->rows; }

static PyObject *flowtable_arrow_c_stream(FlowTableObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"requested_schema", NULL};
    PyObject *requested = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &requested)) return NULL;
    (void)requested; /* the schema is fixed; DuckDB casts what it needs */
    struct ArrowArrayStream *stream = calloc(1, sizeof *stream);
    StreamState *s = calloc(1, sizeof *s);
    if (!stream || !s) {
        free(stream);
        free(s);
        return PyErr_NoMemory();
    }
    s->x = self->x;
    s->next = 0;
    atomic_fetch_add(&self->x->refs, 1);
    stream->get_schema = stream_get_schema;
    stream->get_next = stream_get_next;
    stream->get_last_error = stream_last_error;
    stream->release = stream_release;
    stream->private_data = s;
    PyObject *capsule = PyCapsule_New(stream, "arrow_array_stream", stream_capsule_destructor);
    if (!capsule) {
        stream_release(stream);
        free(stream);
    }
    return capsule;
}

static PyObject *flowtable_columns(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    PyObject *names = PyTuple_New(NCOLS);
    if (!names) return NULL;
    for (int i = 0; i < NCOLS; i++) {
        PyObject *name = PyUnicode_FromString(COLUMNS[i].name);
        if (!name) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    return names;
}

static PyMethodDef flowtable_methods[] = {
    {"__arrow_c_stream__", (PyCFunction)(void (*)(void))flowtable_arrow_c_stream,
     METH_VARARGS | METH_KEYWORDS, "The flows as an Arrow C stream (PyCapsule)."},
    {"columns", flowtable_columns, METH_NOARGS | METH_STATIC, "The column names, in order."},
    {NULL, NULL, 0, NULL},
};

static PyObject *flowtable_get_merged(FlowTableObject *self, void *unused) {
    (void)unused;
    return PyBool_FromLong(self->merged);
}

static PyGetSetDef flowtable_getset[] = {
    {"merged", (getter)flowtable_get_merged, NULL,
     "whether the Scanners shared a MAC, so that their flows were merged by key", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods flowtable_as_sequence = {.sq_length = (lenfunc)flowtable_len};

static PyTypeObject FlowTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shared.adapters._flowscan.FlowTable",
    .tp_basicsize = sizeof(FlowTableObject),
    .tp_dealloc = (destructor)flowtable_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The aggregated flows of a Scanner, as Arrow column buffers.",
    .tp_methods = flowtable_methods,
    .tp_getset = flowtable_getset,
    .tp_as_sequence = &flowtable_as_sequence,
};

typedef struct {
    PyObject_HEAD
    State st;
    int busy; /* a feed() is running without the GIL: no other call may touch the state */
    int ready;
} ScannerObject;

static void state_free(State *st) {
    strings_free(&st->strings);
    flows_free(&st->local);
    free(st->rows.e);
    pairs_free(&st->pairs);
    stage_free(&st->stage);
    for (int i = 0; i < P_COUNT; i++) free(st->problems[i].example);
    free(st->buf);
    memset(st, 0, sizeof *st);
}

/* The busy flag: a call that works on a Scanner's state sets it, with no Python code run
 * between the check and the setting (everything that may run Python - argument conversion,
 * object creation - happens before), and clears it when done. Another call meanwhile (another
 * thread while the GIL is released, or a finalizer) is refused instead of racing. */
static int claim(ScannerObject *self) {
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner.__init__ was not called");
        return 0;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "a Scanner is used by one call at a time");
        return 0;
    }
    self->busy = 1;
    return 1;
}

static int scanner_init(ScannerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"interval_ms", "min_ms", "max_ms", NULL};
    long long interval, min_ms, max_ms;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "LLL", kwlist, &interval, &min_ms, &max_ms))
        return -1;
    if (interval <= 0 || min_ms > max_ms) {
        PyErr_SetString(PyExc_ValueError, "interval_ms must be positive and min_ms <= max_ms");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "a Scanner cannot be initialized while in use");
        return -1;
    }
    if (self->ready) state_free(&self->st);
    self->ready = 0;
    memset(&self->st, 0, sizeof self->st);
    self->st.interval_ms = interval;
    self->st.min_ms = min_ms;
    self->st.max_ms = max_ms;
    if (strings_init(&self->st.strings) || flows_init(&self->st.local, 1024) ||
        pairs_init(&self->st.pairs)) {
        state_free(&self->st);
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    return 0;
}

static void scanner_dealloc(ScannerObject *self) {
    if (self->ready) state_free(&self->st);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Room for n bytes and the NUL after them in st->buf. With ZTS_EXACT_BUFFER (the sanitizer
 * build of tools/fuzz_flowscan.py) exactly that, so that a read past the sentinel is caught. */
static int reserve_buf(State *st, size_t n) {
#ifdef ZTS_EXACT_BUFFER
    char *exact = realloc(st->buf, n + 1);
    if (!exact) return ERR_NOMEM;
    st->buf = exact;
    st->buf_cap = n + 1;
    return 0;
#endif
    if (n + 1 <= st->buf_cap) return 0;
    size_t cap = st->buf_cap ? st->buf_cap : 1 << 20;
    while (cap < n + 1) cap *= 2;
    char *b = realloc(st->buf, cap);
    if (!b) return ERR_NOMEM;
    st->buf = b;
    st->buf_cap = cap;
    return 0;
}

static PyObject *scanner_feed(ScannerObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (!claim(self)) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = reserve_buf(&self->st, (size_t)view.len);
    if (r == 0) {
        /* a copy: the parser needs the NUL after the blob */
        memcpy(self->st.buf, view.buf, (size_t)view.len);
        self->st.buf[view.len] = '\0';
        r = parse_blob(&self->st, self->st.buf, (size_t)view.len);
        if (r == TAKEN) r = commit_blob(&self->st);
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&view);
    if (r == ERR_NOMEM) return PyErr_NoMemory();
    return PyLong_FromLong(r);
}

/* The whole file at path into st->buf: its length, or -errno. */
static int64_t read_file(State *st, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    size_t want = sb.st_size > 0 ? (size_t)sb.st_size : 0;
    size_t len = 0;
    for (;;) {
        if (reserve_buf(st, (len + 1 >= st->buf_cap) ? len + 1 : want)) {
            close(fd);
            return -ENOMEM;
        }
        ssize_t n = read(fd, st->buf + len, st->buf_cap - len - 1);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    close(fd);
    st->buf[len] = '\0'; /* the parser's sentinel */
    return (int64_t)len;
}

static PyObject *scanner_feed_file(ScannerObject *self, PyObject *arg) {
    PyObject *encoded;
    if (!PyUnicode_FSConverter(arg, &encoded)) return NULL;
    if (!claim(self)) {
        Py_DECREF(encoded);
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(encoded);
    int r = 0;
    int64_t len;
    Py_BEGIN_ALLOW_THREADS
    len = read_file(&self->st, path);
    if (len >= 0) {
        r = parse_blob(&self->st, self->st.buf, (size_t)len);
        if (r == TAKEN) r = commit_blob(&self->st);
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (len < 0) {
        errno = (int)-len;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
        Py_DECREF(encoded);
        return NULL;
    }
    Py_DECREF(encoded);
    if (r == ERR_NOMEM) return PyErr_NoMemory();
    return PyLong_FromLong(r);
}

static PyObject *scanner_feed_files(ScannerObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "feed_files() takes a sequence of paths");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **encoded = PyMem_Calloc(n ? (size_t)n : 1, sizeof *encoded);
    const char **paths = PyMem_Calloc(n ? (size_t)n : 1, sizeof *paths);
    int64_t *codes = PyMem_Calloc(n ? (size_t)n : 1, sizeof *codes);
    PyObject *out = NULL;
    int claimed = 0;
    if (!encoded || !paths || !codes) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(seq, i), &encoded[i])) goto done;
        paths[i] = PyBytes_AS_STRING(encoded[i]);
    }
    out = PyList_New(n); /* before the claim: creating objects may run Python */
    if (!out || !(claimed = claim(self))) goto done;
    int nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !nomem; i++) {
        int64_t len = read_file(&self->st, paths[i]);
        if (len < 0) {
            codes[i] = len; /* -errno */
            nomem = len == -ENOMEM;
            continue;
        }
        int r = parse_blob(&self->st, self->st.buf, (size_t)len);
        if (r == TAKEN) r = commit_blob(&self->st);
        nomem = r == ERR_NOMEM;
        codes[i] = r;
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (nomem) {
        PyErr_NoMemory();
        Py_CLEAR(out);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *code = PyLong_FromLongLong((long long)codes[i]);
        if (!code) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, code);
    }
done:
    if (!claimed) Py_CLEAR(out);
    if (encoded) {
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(encoded[i]);
    }
    PyMem_Free(encoded);
    PyMem_Free(paths);
    PyMem_Free(codes);
    Py_DECREF(seq);
    return out;
}

static PyObject *scanner_merge(ScannerObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, Py_TYPE(self))) {
        PyErr_SetString(PyExc_TypeError, "merge() takes another Scanner");
        return NULL;
    }
    ScannerObject *other = (ScannerObject *)arg;
    if (other == self) {
        PyErr_SetString(PyExc_ValueError, "a Scanner cannot merge itself");
        return NULL;
    }
    if (!claim(self)) return NULL;
    if (!claim(other)) {
        self->busy = 0;
        return NULL;
    }
    int r = 0;
    if (other->st.interval_ms != self->st.interval_ms) {
        r = 1;
    } else {
        r = merge_state(&self->st, &other->st) ? ERR_NOMEM : 0;
    }
    other->busy = 0;
    self->busy = 0;
    if (r == 1) {
        PyErr_SetString(PyExc_ValueError, "the Scanners aggregate over different intervals");
        return NULL;
    }
    if (r == ERR_NOMEM) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *scanner_strings(ScannerObject *self, PyObject *unused) {
    (void)unused;
    /* strings are created one by one below (each may run Python): the claim keeps the table
     * still meanwhile */
    if (!claim(self)) return NULL;
    const Strings *t = &self->st.strings;
    PyObject *out = PyList_New(t->count);
    if (out) {
        for (uint32_t i = 0; i < t->count; i++) {
            PyObject *s = PyUnicode_DecodeASCII(strings_at(t, i), t->len[i], "strict");
            if (!s) {
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(out, i, s);
        }
    }
    self->busy = 0;
    return out;
}

static PyObject *scanner_flows(ScannerObject *self, PyObject *args) {
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(args, i);
        if (!PyObject_TypeCheck(o, Py_TYPE(self))) {
            PyErr_SetString(PyExc_TypeError, "flows() takes other Scanners");
            return NULL;
        }
        int repeated = (ScannerObject *)o == self;
        for (Py_ssize_t j = 0; j < i; j++) repeated |= PyTuple_GET_ITEM(args, j) == o;
        if (repeated) {
            PyErr_SetString(PyExc_ValueError, "each Scanner may be given once");
            return NULL;
        }
        if (((ScannerObject *)o)->st.interval_ms != self->st.interval_ms) {
            PyErr_SetString(PyExc_ValueError, "the Scanners aggregate over different intervals");
            return NULL;
        }
    }
    State **others = PyMem_Calloc(n ? (size_t)n : 1, sizeof *others);
    if (!others) return PyErr_NoMemory();
    FlowTableObject *table = PyObject_New(FlowTableObject, &FlowTableType);
    if (!table) {
        PyMem_Free(others);
        return NULL;
    }
    table->x = NULL;
    table->merged = 0;
    /* everything that may run Python is done: claim every Scanner, or none */
    Py_ssize_t claimed = -1;
    if (claim(self)) {
        for (claimed = 0; claimed < n; claimed++) {
            if (!claim((ScannerObject *)PyTuple_GET_ITEM(args, claimed))) break;
            others[claimed] = &((ScannerObject *)PyTuple_GET_ITEM(args, claimed))->st;
        }
    }
    if (claimed < n) {
        for (Py_ssize_t i = 0; i < claimed; i++)
            ((ScannerObject *)PyTuple_GET_ITEM(args, i))->busy = 0;
        if (claimed >= 0) self->busy = 0;
        Py_DECREF(table);
        PyMem_Free(others);
        return NULL;
    }
    Export *x;
    int merged;
    Py_BEGIN_ALLOW_THREADS
    x = export_combined(&self->st, others, (int)n, &merged);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) ((ScannerObject *)PyTuple_GET_ITEM(args, i))->busy = 0;
    self->busy = 0;
    PyMem_Free(others);
    if (!x) {
        Py_DECREF(table);
        return PyErr_NoMemory();
    }
    table->x = x;
    table->merged = merged;
    return (PyObject *)table;
}

static PyObject *scanner_address_problems(ScannerObject *self, PyObject *unused) {
    (void)unused;
    if (!claim(self)) return NULL;
    PyObject *out = PyList_New(0);
    for (int i = 0; out && i < P_COUNT; i++) {
        const Problem *p = &self->st.problems[i];
        if (!p->tuples) continue;
        PyObject *item = Py_BuildValue("(iLs#)", i, (long long)p->tuples, p->example,
                                       (Py_ssize_t)p->example_len);
        if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
        Py_XDECREF(item);
    }
    self->busy = 0;
    return out;
}

static PyObject *scanner_get_counter(ScannerObject *self, void *which) {
    if (!self->ready) return PyLong_FromLong(0);
    switch ((intptr_t)which) {
    case 0: return PyLong_FromLongLong(self->st.blobs);
    case 1: return PyLong_FromLongLong(self->st.records);
    case 2: return PyLong_FromLongLong(self->st.tuples);
    case 3: return PyLong_FromLongLong(self->st.saturated);
    case 5: return PyLong_FromLongLong(self->st.bytes);
    default: return PyLong_FromLongLong((long long)self->st.rows.count);
    }
}

static PyGetSetDef scanner_getset[] = {
    {"blobs", (getter)scanner_get_counter, NULL, "blobs taken", (void *)0},
    {"records", (getter)scanner_get_counter, NULL, "records of the blobs taken", (void *)1},
    {"tuples", (getter)scanner_get_counter, NULL, "tuples of the blobs taken", (void *)2},
    {"flow_count", (getter)scanner_get_counter, NULL,
     "aggregated flows so far (a key that two blobs had counts twice until flows() merges it)",
     (void *)4},
    {"bytes", (getter)scanner_get_counter, NULL, "bytes read by feed_file()", (void *)5},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef scanner_methods[] = {
    {"feed", (PyCFunction)scanner_feed, METH_O,
     "feed(blob) -> 0 when the blob was taken, else the code of why it was declined."},
    {"feed_files", (PyCFunction)scanner_feed_files, METH_O,
     "feed_files(paths) -> [code]: feed_file() for each path without taking the GIL in "
     "between; a file that cannot be read gives -errno."},
    {"feed_file", (PyCFunction)scanner_feed_file, METH_O,
     "feed_file(path) -> feed() of the file's bytes, read without the GIL (OSError if it "
     "cannot be read)."},
    {"merge", (PyCFunction)scanner_merge, METH_O, "merge(other): fold another Scanner in."},
    {"strings", (PyCFunction)scanner_strings, METH_NOARGS,
     "The interned strings; the flows' mac, acl, rule, enc, flowlog and target are indexes."},
    {"flows", (PyCFunction)scanner_flows, METH_VARARGS,
     "flows(*others) -> FlowTable: the aggregated flows of this Scanner and of others (whose "
     "strings are interned into this one's, so strings() names all of them afterwards); the "
     "Scanners' rows and counts are left as they were."},
    {"address_problems", (PyCFunction)scanner_address_problems, METH_NOARGS,
     "[(problem, tuples, smallest address)] for tuples skipped for their address."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shared.adapters._flowscan.Scanner",
    .tp_basicsize = sizeof(ScannerObject),
    .tp_dealloc = (destructor)scanner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Scanner(interval_ms, min_ms, max_ms): aggregates canonical flow log blobs.",
    .tp_methods = scanner_methods,
    .tp_getset = scanner_getset,
    .tp_init = (initproc)scanner_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_flowscan",
    "Native fast path of the flow-log reader (see shared/adapters/flow_scan.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__flowscan(void) {
    if (PyType_Ready(&ScannerType) < 0 || PyType_Ready(&FlowTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyObject *reasons = PyTuple_New(D_COUNT);
    if (!reasons) goto fail;
    for (int i = 0; i < D_COUNT; i++) {
        PyObject *s = PyUnicode_FromString(DECLINE_REASONS[i]);
        if (!s) {
            Py_DECREF(reasons);
            goto fail;
        }
        PyTuple_SET_ITEM(reasons, i, s);
    }
    if (PyModule_AddObject(m, "DECLINE_REASONS", reasons) < 0) {
        Py_DECREF(reasons);
        goto fail;
    }
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        goto fail;
    }
    Py_INCREF(&FlowTableType);
    if (PyModule_AddObject(m, "FlowTable", (PyObject *)&FlowTableType) < 0) {
        Py_DECREF(&FlowTableType);
        goto fail;
    }
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
