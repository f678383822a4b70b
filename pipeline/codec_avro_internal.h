/*
 * codec_avro_internal.h - what the Avro codec's files share:
 *   codec_avro.c         prescan, generic (Avro-C) decode, entry points
 *   codec_avro_schema.c  schema loading, compatibility, resolution, set-up
 *   codec_avro_fast.c    canonical-layout decoder straight from the bytes
 *   codec_avro_encode.c  encode
 * Not part of the public API: include only from pipeline/codec_avro*.c.
 */
#ifndef FD_CODEC_AVRO_INTERNAL_H
#define FD_CODEC_AVRO_INTERNAL_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/codec_internal.h"

enum {
    F_EVENT_ID,
    F_USER_ID,
    F_TS,
    F_TYPE,
    F_ITEM_ID,
    F_SESSION_ID,
    F_PRICE,
    F_QUANTITY,
    F_CATEGORY,
    F__COUNT
};
/* Reader field names, indexed by F_* (codec_avro_schema.c). */
extern const char *const fd_avro_field_names[F__COUNT];

#define SCAN_MAX_DEPTH 32
#define ENUM_MAX       64

/* One writer schema the codec can read, with its reused values. */
typedef struct avro_dec {
    int32_t id;                   /* confluent id (plain avro: unused) */
    avro_schema_t wschema;        /* the bytes are in this schema */
    avro_value_iface_t *wclass;   /* generic class of wschema */
    avro_value_t wvalue;          /* filled by avro_value_read */
    avro_value_iface_t *resolver; /* NULL when wschema is the reader schema */
    avro_value_t rvalue;          /* resolved view of wvalue (reader names) */
    avro_value_t *view;           /* &wvalue or &rvalue */
    int idx[F__COUNT];            /* field index in the view, -1 = use tmpl */
    bool projected;               /* some reader fields missing: start from tmpl */
    bool fast;                    /* canonical layout: decode bytes directly */
    fd_event tmpl;                /* fd_event_init + reader defaults */
} avro_dec;

struct fd_avro_state {
    avro_schema_t rschema;
    char *rjson; /* reader schema text, for projections */
    avro_reader_t reader;
    avro_dec plain; /* writer == reader */
    avro_dec *ids;  /* confluent writer schemas */
    size_t n_ids;
    int type_map[ENUM_MAX]; /* reader enum index -> fd_event_type or -1 */
    int n_symbols;
    int type_rev[FD_EV__COUNT]; /* fd_event_type -> reader enum index */
    int ridx[F__COUNT];         /* field index in the reader schema */
    int null_branch[F__COUNT], val_branch[F__COUNT];
    /* encode */
    avro_value_iface_t *enc_class;
    avro_value_t enc_value;
    avro_writer_t writer;
    char *ebuf;
    size_t ecap;
};

static inline avro_schema_t deref(avro_schema_t s)
{
    while (s && avro_typeof(s) == AVRO_LINK)
        s = avro_schema_link_target(s);
    return s;
}

/* codec_avro_fast.c: the canonical layout (avro_dec.fast), see there. */
bool fd_avro_strict_decode(const fd_avro_state *a, const uint8_t *p, size_t n, fd_event *ev);
fd_reject fd_avro_fast_decode(fd_avro_state *a, const uint8_t *p, size_t n, fd_event *ev,
                              char *errstr, size_t errstr_size);

#endif
