/*
 * user.c - see user.h.
 *
 * Why open addressing: a shard touches millions of users per second; one
 * probe sequence over a contiguous array beats chained buckets in cache
 * misses, and removal by rebuilding (fd_user_table_filter) keeps the probe
 * invariants trivially correct without tombstones.
 */
#include "features/user.h"

#include <stdlib.h>
#include <string.h>

struct fd_user_table {
    fd_user *slots; /* id == NULL means empty */
    size_t cap;     /* power of two */
    size_t count;
};

uint32_t fd_user_hash(const char *id, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 16777619u;
    }
    return h;
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

void fd_user_table_free(fd_user_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].id);
    free(t->slots);
    free(t);
}

static size_t probe(const fd_user_table *t, const char *id, size_t len, uint32_t h)
{
    size_t mask = t->cap - 1;
    size_t i = h & mask;
    for (;;) {
        const fd_user *s = &t->slots[i];
        if (!s->id || (s->hash == h && s->id_len == len && memcmp(s->id, id, len) == 0))
            return i;
        i = (i + 1) & mask;
    }
}

fd_user *fd_user_table_find(fd_user_table *t, const char *id, size_t len)
{
    fd_user *s = &t->slots[probe(t, id, len, fd_user_hash(id, len))];
    return s->id ? s : NULL;
}

static int grow(fd_user_table *t)
{
    size_t ncap = t->cap * 2;
    fd_user *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        fd_user *s = &t->slots[i];
        if (!s->id)
            continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].id)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return 0;
}

fd_user *fd_user_table_upsert(fd_user_table *t, const char *id, size_t len, bool *created)
{
    uint32_t h = fd_user_hash(id, len);
    fd_user *s = &t->slots[probe(t, id, len, h)];
    *created = false;
    if (s->id)
        return s;
    if ((t->count + 1) * 4 > t->cap * 3) { /* keep load <= 0.75 */
        if (grow(t) != 0)
            return NULL;
        s = &t->slots[probe(t, id, len, h)];
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, id, len);
    copy[len] = '\0';
    memset(s, 0, sizeof *s);
    s->id = copy;
    s->id_len = (uint32_t)len;
    s->hash = h;
    s->partition = -1;
    t->count++;
    *created = true;
    return s;
}

size_t fd_user_table_count(const fd_user_table *t)
{
    return t->count;
}

fd_user *fd_user_table_next(fd_user_table *t, size_t *cursor)
{
    while (*cursor < t->cap) {
        fd_user *s = &t->slots[(*cursor)++];
        if (s->id)
            return s;
    }
    return NULL;
}

int fd_user_table_filter(fd_user_table *t, bool (*keep)(const fd_user *u, void *arg), void *arg)
{
    fd_user *ns = calloc(t->cap, sizeof *ns);
    if (!ns)
        return -1;
    size_t kept = 0;
    for (size_t i = 0; i < t->cap; i++) {
        fd_user *s = &t->slots[i];
        if (!s->id)
            continue;
        if (!keep(s, arg)) {
            free(s->id);
            continue;
        }
        size_t j = s->hash & (t->cap - 1);
        while (ns[j].id)
            j = (j + 1) & (t->cap - 1);
        ns[j] = *s;
        kept++;
    }
    free(t->slots);
    t->slots = ns;
    t->count = kept;
    return 0;
}
