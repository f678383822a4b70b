/*
 * user.c - see user.h.
 *
 * Why open addressing: a shard touches millions of users per second; one
 * probe sequence over a contiguous array beats chained buckets in cache
 * misses, and removal by placing every remaining entry again, in place
 * (fd_user_table_filter), keeps the probe runs without holes and needs
 * neither tombstones nor memory.
 */
#include "features/user.h"

#include <stdlib.h>
#include <string.h>

uint32_t fd_user_hash(const char *id, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 16777619u;
    }
    return h;
}

/*
 * Why a table of (hash, index) slots over blocks of users: the slots are 8
 * bytes, so the open-addressing slack (load 0.375..0.75) costs 11-21 bytes
 * per user instead of a whole fd_user (~340 bytes); users live in blocks
 * that never move, so a user's address is stable until it is removed (the
 * funnel's stage reaches borrow ids and the shards keep pointers across a
 * batch), and freed users are reused through a free list.
 */
#define BLOCK_USERS 1024

struct fd_user_table {
    uint64_t *slots; /* (hash << 32) | (index + 1); 0 = empty */
    size_t cap;      /* power of two */
    size_t count;
    fd_user **blocks; /* BLOCK_USERS users each */
    size_t n_blocks;
    uint32_t next; /* users ever handed out (high-water mark) */
    /* removed users, for reuse: index + 1 of the first, 0 = none; each
     * removed user's memory holds the next (free_link) */
    uint32_t free_head;
};

static inline fd_user *at(const fd_user_table *t, uint32_t idx)
{
    return &t->blocks[idx / BLOCK_USERS][idx % BLOCK_USERS];
}

fd_user_table *fd_user_table_new(size_t initial_capacity)
{
    fd_user_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    size_t cap = 1024;
    while (cap < initial_capacity * 2)
        cap <<= 1;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    t->cap = cap;
    return t;
}

/* A removed user's memory is dead until take_index hands it out again
 * (and fd_user_table_upsert clears it): its first bytes hold the free
 * list's link, so removing users never needs memory. memcpy: the bytes
 * are also the user's fields, and a char access may alias them. */
static inline uint32_t free_link(const fd_user *u)
{
    uint32_t next;
    memcpy(&next, u, sizeof next);
    return next;
}

static inline void set_free_link(fd_user *u, uint32_t next)
{
    memcpy(u, &next, sizeof next);
}

static void free_id(fd_user *u)
{
    if (u->id_len >= FD_USER_ID_INLINE)
        free(u->id_.heap);
    u->id_.heap = NULL;
}

void fd_user_table_free(fd_user_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i])
            free_id(at(t, (uint32_t)(t->slots[i] & 0xffffffffu) - 1));
    for (size_t b = 0; b < t->n_blocks; b++)
        free(t->blocks[b]);
    free(t->blocks);
    free(t->slots);
    free(t);
}

/* The slot holding id, or the empty slot where it would go. */
static size_t probe(const fd_user_table *t, const char *id, size_t len, uint32_t h)
{
    size_t mask = t->cap - 1;
    size_t i = h & mask;
    for (;;) {
        uint64_t v = t->slots[i];
        if (!v)
            return i;
        if ((uint32_t)(v >> 32) == h) {
            const fd_user *u = at(t, (uint32_t)(v & 0xffffffffu) - 1);
            if (u->id_len == len && memcmp(fd_user_id(u), id, len) == 0)
                return i;
        }
        i = (i + 1) & mask;
    }
}

fd_user *fd_user_table_find(fd_user_table *t, const char *id, size_t len)
{
    uint64_t v = t->slots[probe(t, id, len, fd_user_hash(id, len))];
    return v ? at(t, (uint32_t)(v & 0xffffffffu) - 1) : NULL;
}

static void place(uint64_t *slots, size_t cap, uint64_t v)
{
    size_t j = (size_t)(v >> 32) & (cap - 1);
    while (slots[j])
        j = (j + 1) & (cap - 1);
    slots[j] = v;
}

static int grow(fd_user_table *t)
{
    size_t ncap = t->cap * 2;
    uint64_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i])
            place(ns, ncap, t->slots[i]);
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return 0;
}

/* A free user index (from the free list, else a new one); -1 when out of
 * memory. */
static int64_t take_index(fd_user_table *t)
{
    if (t->free_head) {
        uint32_t idx = t->free_head - 1;
        t->free_head = free_link(at(t, idx));
        return idx;
    }
    if (t->next == UINT32_MAX - 1)
        return -1;
    if (t->next / BLOCK_USERS == t->n_blocks) {
        fd_user **nb = realloc(t->blocks, (t->n_blocks + 1) * sizeof *nb);
        if (!nb)
            return -1;
        t->blocks = nb;
        if (!(nb[t->n_blocks] = malloc(BLOCK_USERS * sizeof(fd_user))))
            return -1;
        t->n_blocks++;
    }
    return t->next++;
}

fd_user *fd_user_table_upsert(fd_user_table *t, const char *id, size_t len, bool *created)
{
    uint32_t h = fd_user_hash(id, len);
    size_t i = probe(t, id, len, h);
    *created = false;
    if (t->slots[i])
        return at(t, (uint32_t)(t->slots[i] & 0xffffffffu) - 1);
    if ((t->count + 1) * 4 > t->cap * 3) { /* keep load <= 0.75 */
        if (grow(t) != 0)
            return NULL;
        i = probe(t, id, len, h);
    }
    char *copy = len < FD_USER_ID_INLINE ? NULL : malloc(len + 1);
    int64_t idx = copy || len < FD_USER_ID_INLINE ? take_index(t) : -1;
    if (idx < 0) {
        free(copy);
        return NULL;
    }
    fd_user *u = at(t, (uint32_t)idx);
    memset(u, 0, sizeof *u);
    char *dst = copy ? copy : u->id_.inl;
    memcpy(dst, id, len);
    dst[len] = '\0';
    if (copy)
        u->id_.heap = copy;
    u->id_len = (uint32_t)len;
    u->hash = h;
    u->partition = -1;
    t->slots[i] = (uint64_t)h << 32 | (uint64_t)(idx + 1);
    t->count++;
    *created = true;
    return u;
}

size_t fd_user_table_count(const fd_user_table *t)
{
    return t->count;
}

fd_user *fd_user_table_next(fd_user_table *t, size_t *cursor)
{
    while (*cursor < t->cap) {
        uint64_t v = t->slots[(*cursor)++];
        if (v)
            return at(t, (uint32_t)(v & 0xffffffffu) - 1);
    }
    return NULL;
}

void fd_user_table_filter(fd_user_table *t, bool (*keep)(const fd_user *u, void *arg), void *arg)
{
    /* In place, no allocation (the free list lives in the removed users
     * themselves). Linear probing: starting just after a slot that is
     * empty now (the load is <= 0.75, so there is one), every entry is
     * taken out and, if kept, placed again from its home slot. No probe
     * run crosses that empty slot, so when an entry is placed again every
     * entry before it on its run is already in its final place: it lands
     * at or before where it was, on a run with no hole. */
    size_t mask = t->cap - 1, start = 0;
    while (t->slots[start])
        start++;
    for (size_t k = 1; k <= t->cap; k++) {
        size_t i = (start + k) & mask;
        uint64_t v = t->slots[i];
        if (!v)
            continue;
        t->slots[i] = 0;
        uint32_t idx = (uint32_t)(v & 0xffffffffu) - 1;
        fd_user *u = at(t, idx);
        if (keep(u, arg)) {
            place(t->slots, t->cap, v);
        } else {
            free_id(u);
            set_free_link(u, t->free_head);
            t->free_head = idx + 1;
            t->count--;
        }
    }
}
