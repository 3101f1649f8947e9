/*
 * Fused GradDrop mask kernel (CPU).
 *
 * Bit-for-bit the same function as graddrop_dist/mask/counter_hash.py (the reference):
 *   c      = (offset + j) / block                      (global draw index, 64 bit)
 *   u      = mix(mix(lo32(c) ^ k0) ^ k1 ^ hi32(c) * GOLDEN)
 *   keep   = lo <= u < lo + width                      (a band: width = 2^32 - lo unless
 *                                                       disjoint graddrop-epoch bounds it)
 *   out[j] = keep ? in[j] * scale : +0.0
 * The keep bit is an unsigned compare, (u - lo) < width, and the value path is a bitwise
 * AND with the all-ones or all-zeros mask of that bit (one IEEE multiply first when
 * rescaling), so every instruction set gives the same result.
 *
 * Why it is fast (the floor is one read and one write per element):
 * - the element loop is compiled once per instruction set (AVX-512, AVX2, SSE2) with
 *   32-bit lanes: within one 2^32 segment only lo32 of the index varies;
 * - the load is unconditional and the select branch-free, so the load never waits for
 *   its hash and the hash of one tile overlaps the memory traffic of the next;
 * - a software prefetch runs PREFETCH bytes ahead (the hardware prefetcher falls behind
 *   a loop this busy);
 * - tiles whose bits are all zero (+0.0: embedding rows of tokens absent from the batch)
 *   are not hashed, tested inside the same compiled loop;
 * - large calls are split over OpenMP threads of the OpenMP runtime torch itself loaded
 *   (the loader binds this library's libgomp.so.1 to torch's copy), so the mask and
 *   torch's own kernels share one pool of threads instead of fighting over cores.
 * No torch headers: the file builds in about a second and is loaded with ctypes, which
 * releases the GIL.
 */
#include <stdint.h>
#include <string.h>

#define GOLDEN 0x9E3779B9u
#ifndef TILE
#define TILE 64                 /* elements tested for all-zero bits at once */
#endif
#ifndef PREFETCH
#define PREFETCH 4096           /* bytes ahead */
#endif
#define PACK_TILE 4096          /* keep bits drawn at once for packing */
#define MIN_PARALLEL (1 << 20)  /* elements per thread below which one thread is faster */

enum { ISA_DEFAULT = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
enum { F32 = 0, BF16 = 1, F16 = 2 };

static inline uint32_t mix(uint32_t x) {
    /* "lowbias32" (C. Wellons): full avalanche with two multiplies. */
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

static inline uint32_t draw(uint64_t c, uint32_t k0, uint32_t k1) {
    uint32_t hk = k1 ^ ((uint32_t)(c >> 32) * GOLDEN);
    return mix(mix((uint32_t)c ^ k0) ^ hk);
}

static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline uint16_t f32_to_bf16(float f) {
    /* Round to nearest even, NaN kept quiet: what torch does for float -> bfloat16. */
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline uint16_t rescale_bf16(uint16_t x, float scale) {
    return f32_to_bf16(bits_f32((uint32_t)x << 16) * scale);
}

static inline uint16_t rescale_f16(uint16_t x, float scale) {
    /* IEEE half: to float, one float multiply, back with round to nearest even (what
     * torch computes for a Half tensor times a scalar). */
    _Float16 h;
    memcpy(&h, &x, 2);
    _Float16 r = (_Float16)((float)h * scale);
    uint16_t out;
    memcpy(&out, &r, 2);
    return out;
}

/* --------------------------------------------------------------- the cloned loops
 * KERNELS(SUFFIX, ATTRIBUTES) defines, for one instruction set:
 *   mask32_SUFFIX / mask16_SUFFIX: element granularity, in -> out (out may be in;
 *     mask16's `how`: 0 no rescale, 2 bfloat16, 3 float16 rescaling);
 *   keep_SUFFIX: the keep bits as bytes.
 * `base` is lo32 of the first element's index; the caller cuts calls at 2^32 boundaries
 * (hi32 is then constant: `hk` folds it into k1). */
#define HASH_SELECT(T, KEEP_VALUE, SRC, DST, FIRST, COUNT)                          \
    for (int t = 0; t < (COUNT); ++t) {                                               \
        uint32_t u = mix(mix(((FIRST) + (uint32_t)t) ^ k0) ^ hk);                     \
        T keep = (T)(0u - (uint32_t)((u - lo) < width));                              \
        T x = (SRC)[t];                                                               \
        (DST)[t] = (KEEP_VALUE) & keep;                                               \
    }

/* Whole tiles (fixed trip counts: fully vectorized, no tail inside), then the tail. */
#define MASK_TILES(T, KEEP_VALUE, SRC, DST)                                             \
    int64_t whole = n / TILE * TILE;                                                  \
    for (int64_t j = 0; j < whole; j += TILE) {                                       \
        const T *src = (SRC) + j;                                                     \
        T *dst = (DST) + j;                                                           \
        for (int line = 0; line < TILE * (int)sizeof(T); line += 64)                  \
            __builtin_prefetch((const char *)src + PREFETCH + line, 0, 3);            \
        T any = 0;                                                                    \
        for (int t = 0; t < TILE; ++t) any |= src[t];                                 \
        if (!any) { /* +0.0 kept or dropped: nothing to hash */                       \
            if ((const void *)dst != (const void *)src)                               \
                memset(dst, 0, TILE * sizeof(T));                                     \
            continue;                                                                 \
        }                                                                             \
        HASH_SELECT(T, KEEP_VALUE, src, dst, base + (uint32_t)j, TILE)                \
    }                                                                                 \
    HASH_SELECT(T, KEEP_VALUE, (SRC) + whole, (DST) + whole, base + (uint32_t)whole,   \
                (int)(n - whole))

/* In place (one pointer) or into another buffer (restrict: no alias check per tile). */
#define MASK_LOOP(T, KEEP_VALUE)                                                        \
    if ((const void *)in == (const void *)out) {                                      \
        T *p = out;                                                                   \
        MASK_TILES(T, KEEP_VALUE, p, p)                                               \
    } else {                                                                          \
        const T *restrict from = in;                                                  \
        T *restrict to = out;                                                         \
        MASK_TILES(T, KEEP_VALUE, from, to)                                           \
    }

#define KERNELS(SUFFIX, ATTRIBUTES)                                                     \
    ATTRIBUTES static void mask32_##SUFFIX(const uint32_t *in, uint32_t *out,          \
            int64_t n, uint32_t base, uint32_t k0, uint32_t hk, uint32_t lo,            \
            uint32_t width, float scale, int rescale) {                                 \
        if (rescale) { MASK_LOOP(uint32_t, f32_bits(bits_f32(x) * scale)) }           \
        else { MASK_LOOP(uint32_t, x) }                                               \
    }                                                                                   \
    ATTRIBUTES static void mask16_##SUFFIX(const uint16_t *in, uint16_t *out,          \
            int64_t n, uint32_t base, uint32_t k0, uint32_t hk, uint32_t lo,            \
            uint32_t width, float scale, int how) {                                     \
        if (how == BF16 + 1) { MASK_LOOP(uint16_t, rescale_bf16(x, scale)) }      \
        else if (how == F16 + 1) { MASK_LOOP(uint16_t, rescale_f16(x, scale)) }   \
        else { MASK_LOOP(uint16_t, x) }                                               \
    }                                                                                   \
    ATTRIBUTES static void keep_##SUFFIX(uint8_t *keep, int64_t n, uint32_t base,      \
            uint32_t k0, uint32_t hk, uint32_t lo, uint32_t width) {                    \
        for (int64_t j = 0; j < n; ++j) {                                               \
            uint32_t u = mix(mix((base + (uint32_t)j) ^ k0) ^ hk);                      \
            keep[j] = (uint8_t)((u - lo) < width);                                      \
        }                                                                               \
    }

KERNELS(default, )
#if defined(__x86_64__) || defined(__i386__)
KERNELS(avx2, __attribute__((target("avx2,fma,bmi2,f16c"))))
KERNELS(avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c"))))
#endif

typedef void (*mask32_fn)(const uint32_t *, uint32_t *, int64_t, uint32_t, uint32_t,
                          uint32_t, uint32_t, uint32_t, float, int);
typedef void (*mask16_fn)(const uint16_t *, uint16_t *, int64_t, uint32_t, uint32_t,
                          uint32_t, uint32_t, uint32_t, float, int);
typedef void (*keep_fn)(uint8_t *, int64_t, uint32_t, uint32_t, uint32_t, uint32_t,
                        uint32_t);

static struct { int isa; mask32_fn mask32; mask16_fn mask16; keep_fn keep; } kernels = {
    -1, mask32_default, mask16_default, keep_default};

/* Whether this CPU runs instruction set `isa`. */
int graddrop_isa_supported(int isa) {
    if (isa == ISA_DEFAULT) return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (isa == ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("bmi2");
    if (isa == ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    return 0;
}

/* Use instruction set `isa` (-1: the best this CPU runs); returns the one in use, or -1
 * when `isa` is not supported here (nothing changes then). */
int graddrop_set_isa(int isa) {
    if (isa < 0) {
        isa = graddrop_isa_supported(ISA_AVX512) ? ISA_AVX512
            : graddrop_isa_supported(ISA_AVX2) ? ISA_AVX2 : ISA_DEFAULT;
    }
    if (!graddrop_isa_supported(isa)) return -1;
    kernels.isa = isa;
    kernels.mask32 = mask32_default;
    kernels.mask16 = mask16_default;
    kernels.keep = keep_default;
#if defined(__x86_64__) || defined(__i386__)
    if (isa == ISA_AVX2) {
        kernels.mask32 = mask32_avx2; kernels.mask16 = mask16_avx2; kernels.keep = keep_avx2;
    } else if (isa == ISA_AVX512) {
        kernels.mask32 = mask32_avx512; kernels.mask16 = mask16_avx512;
        kernels.keep = keep_avx512;
    }
#endif
    return isa;
}

int graddrop_isa(void) {
    if (kernels.isa < 0) graddrop_set_isa(-1);
    return kernels.isa;
}

/* --------------------------------------------------------------- one thread's span */
/* Split [offset, offset + n) where the high 32 bits of the index change. */
#define FOR_EACH_SEGMENT(BODY)                                                    \
    int64_t done = 0;                                                             \
    while (done < n) {                                                            \
        uint64_t idx = offset + (uint64_t)done;                                   \
        uint64_t room = ((idx >> 32) + 1) * 0x100000000ull - idx;                 \
        int64_t len = (int64_t)((uint64_t)(n - done) < room ? (uint64_t)(n - done) : room); \
        uint32_t base = (uint32_t)idx;                                            \
        uint32_t hk = k1 ^ ((uint32_t)(idx >> 32) * GOLDEN);                      \
        BODY;                                                                     \
        done += len;                                                              \
    }

/* Elements from index j that share the draw of block *c (at most n - j of them). */
static inline int64_t block_run(uint64_t offset, int64_t j, int64_t n, uint64_t block,
                                uint64_t *c) {
    uint64_t index = offset + (uint64_t)j;
    *c = index / block;
    int64_t run = (int64_t)((*c + 1) * block - index);
    return run < n - j ? run : n - j;
}

static void mask_blocks(const void *in, void *out, int dtype, int64_t n, uint64_t offset,
                        uint64_t block, uint32_t k0, uint32_t k1, uint32_t lo,
                        uint32_t width, float scale, int rescale) {
    size_t size = dtype == F32 ? 4 : 2;
    for (int64_t j = 0; j < n;) {
        uint64_t c;
        int64_t run = block_run(offset, j, n, block, &c);
        char *dst = (char *)out + j * size;
        const char *src = (const char *)in + j * size;
        if ((uint32_t)(draw(c, k0, k1) - lo) >= width) {
            memset(dst, 0, (size_t)run * size);
        } else if (!rescale) {
            if (dst != src) memmove(dst, src, (size_t)run * size);
        } else if (dtype == F32) {
            for (int64_t r = 0; r < run; ++r)
                ((float *)dst)[r] = ((const float *)src)[r] * scale;
        } else {
            for (int64_t r = 0; r < run; ++r) {
                uint16_t x = ((const uint16_t *)src)[r];
                ((uint16_t *)dst)[r] = dtype == BF16 ? rescale_bf16(x, scale)
                                                     : rescale_f16(x, scale);
            }
        }
        j += run;
    }
}

static void mask_span(const void *in, void *out, int dtype, int64_t n, uint64_t offset,
                      uint64_t block, uint32_t k0, uint32_t k1, uint32_t lo,
                      uint32_t width, float scale, int rescale) {
    if (block != 1) {
        mask_blocks(in, out, dtype, n, offset, block, k0, k1, lo, width, scale, rescale);
        return;
    }
    if (dtype == F32) {
        FOR_EACH_SEGMENT(kernels.mask32((const uint32_t *)in + done, (uint32_t *)out + done,
                                        len, base, k0, hk, lo, width, scale, rescale));
    } else {
        int how = rescale ? dtype + 1 : 0;
        FOR_EACH_SEGMENT(kernels.mask16((const uint16_t *)in + done, (uint16_t *)out + done,
                                        len, base, k0, hk, lo, width, scale, how));
    }
}

static void keep_span(uint8_t *keep, int64_t n, uint64_t offset, uint64_t block,
                      uint32_t k0, uint32_t k1, uint32_t lo, uint32_t width) {
    if (block == 1) {
        FOR_EACH_SEGMENT(kernels.keep(keep + done, len, base, k0, hk, lo, width));
        return;
    }
    for (int64_t j = 0; j < n;) {
        uint64_t c;
        int64_t run = block_run(offset, j, n, block, &c);
        memset(keep + j, (uint32_t)(draw(c, k0, k1) - lo) < width, (size_t)run);
        j += run;
    }
}

/* --------------------------------------------------------------- the entry points */
/* Chunks of TILE-aligned length, one per thread, over [0, n). */
#define PARALLEL_CHUNKS(THREADS, BODY)                                                \
    int workers = (THREADS) < 1 ? 1 : (THREADS);                                      \
    if ((int64_t)workers * MIN_PARALLEL > n) workers = (int)(n / MIN_PARALLEL);        \
    if (workers < 1) workers = 1;                                                     \
    int64_t step = ((n + workers - 1) / workers + TILE - 1) / TILE * TILE;            \
    if (workers == 1) { /* no OpenMP region: entering one costs more than a bias */   \
        int64_t start = 0, count = n;                                                 \
        BODY;                                                                         \
    } else {                                                                          \
        _Pragma("omp parallel for num_threads(workers) schedule(static)")             \
        for (int w = 0; w < workers; ++w) {                                           \
            int64_t start = (int64_t)w * step;                                        \
            int64_t count = n - start < step ? n - start : step;                      \
            if (count > 0) { BODY; }                                                  \
        }                                                                             \
    }

static void mask_parallel(const void *in, void *out, int dtype, int64_t n, uint64_t offset,
                          uint64_t block, uint32_t k0, uint32_t k1, uint32_t lo,
                          uint32_t width, float scale, int rescale, int threads) {
    size_t size = dtype == F32 ? 4 : 2;
    PARALLEL_CHUNKS(threads,
        mask_span((const char *)in + start * size, (char *)out + start * size, dtype,
                  count, offset + (uint64_t)start, block, k0, k1, lo, width, scale,
                  rescale))
}

/* dtype: 0 = float32, 1 = bfloat16, 2 = float16. in may equal out. */
int graddrop_mask(const void *in, void *out, int dtype, int64_t n, uint64_t offset,
                  uint64_t block, uint32_t k0, uint32_t k1, uint32_t lo, uint32_t width,
                  float scale, int rescale, int threads) {
    if (dtype < F32 || dtype > F16 || block < 1) return -1;
    graddrop_isa();
    mask_parallel(in, out, dtype, n, offset, block, k0, k1, lo, width, scale, rescale,
                  threads);
    return 0;
}

/* One mask's kernel arguments packed once (MaskSpec.kernel_args[2], made by
 * graddrop_dist/mask/spec.py), so the calls made for every parameter in a backward
 * convert a handful of arguments instead of thirteen: from Python, the conversion of each
 * argument costs more than masking a bias. */
typedef struct {
    uint64_t block;
    uint32_t k0, k1, lo, width;
    float scale;
    int32_t rescale;
} graddrop_key;

/* One span of a flat buffer: `n` elements from element `start`, which are the global
 * elements [offset, offset + n) of the parameter `key` masks. */
typedef struct {
    int64_t start, n;
    uint64_t offset;
    graddrop_key key;
} graddrop_span;

/* A whole gradient in place (global elements [0, n)): what the hooks call. */
int graddrop_mask_keyed(void *data, int64_t n, int dtype, const graddrop_key *key,
                        int threads) {
    if (dtype < F32 || dtype > F16 || key->block < 1) return -1;
    graddrop_isa();
    mask_parallel(data, data, dtype, n, 0, key->block, key->k0, key->k1, key->lo,
                  key->width, key->scale, key->rescale, threads);
    return 0;
}

/* Every span of a flat buffer in place, in one call: a DDP bucket, an FSDP flat gradient
 * or reduce-scatter buffer holds many parameters, each with its own key. */
int graddrop_mask_spans(void *base, int dtype, const graddrop_span *spans, int64_t count,
                        int threads) {
    if (dtype < F32 || dtype > F16) return -1;
    for (int64_t s = 0; s < count; ++s)
        if (spans[s].key.block < 1 || spans[s].start < 0 || spans[s].n < 0) return -1;
    graddrop_isa();
    size_t size = dtype == F32 ? 4 : 2;
    for (int64_t s = 0; s < count; ++s) {
        const graddrop_span *span = &spans[s];
        char *data = (char *)base + span->start * size;
        mask_parallel(data, data, dtype, span->n, span->offset, span->key.block,
                      span->key.k0, span->key.k1, span->key.lo, span->key.width,
                      span->key.scale, span->key.rescale, threads);
    }
    return 0;
}

int graddrop_keep(uint8_t *keep, int64_t n, uint64_t offset, uint64_t block, uint32_t k0,
                  uint32_t k1, uint32_t lo, uint32_t width, int threads) {
    if (block < 1) return -1;
    graddrop_isa();
    PARALLEL_CHUNKS(threads, keep_span(keep + start, count, offset + (uint64_t)start, block,
                                       k0, k1, lo, width))
    return 0;
}

/* Communication compaction without a mask in memory: the keep bits of one tile are drawn
 * into a small stack buffer (the cloned loop above), then the kept values are packed
 * contiguously (compress) or the packed values are put back in place (expand). */

/* Write the kept values of in[0, n) (times scale when rescale) to packed, which has room
 * for n values; returns how many. Branch-free: every value is written at the current end
 * and the end moves only when the value is kept. */
int64_t graddrop_compress(const void *in, void *packed, int dtype, int64_t n,
                          uint64_t offset, uint64_t block, uint32_t k0, uint32_t k1,
                          uint32_t lo, uint32_t width, float scale, int rescale) {
    uint8_t keep[PACK_TILE];
    int64_t count = 0;
    graddrop_isa();
    for (int64_t j = 0; j < n; j += PACK_TILE) {
        int64_t len = n - j < PACK_TILE ? n - j : PACK_TILE;
        keep_span(keep, len, offset + (uint64_t)j, block, k0, k1, lo, width);
        if (dtype == F32) {
            const float *src = (const float *)in + j;
            float *dst = (float *)packed;
            for (int64_t t = 0; t < len; ++t) {
                dst[count] = rescale ? src[t] * scale : src[t];
                count += keep[t];
            }
        } else {
            const uint16_t *src = (const uint16_t *)in + j;
            uint16_t *dst = (uint16_t *)packed;
            for (int64_t t = 0; t < len; ++t) {
                uint16_t x = src[t];
                dst[count] = !rescale ? x : dtype == BF16 ? rescale_bf16(x, scale)
                                                          : rescale_f16(x, scale);
                count += keep[t];
            }
        }
    }
    return count;
}

/* out[j] = the next of the `total` packed values where element j is kept, +0.0 where it
 * is dropped; returns how many the mask keeps (the caller checks it equals total).
 * Branch-free like compress: the read index is clamped so it never passes the end. */
int64_t graddrop_expand(const void *packed, int64_t total, void *out, int dtype, int64_t n,
                        uint64_t offset, uint64_t block, uint32_t k0, uint32_t k1,
                        uint32_t lo, uint32_t width) {
    uint8_t keep[PACK_TILE];
    int64_t count = 0;
    size_t size = dtype == F32 ? 4 : 2;
    graddrop_isa();
    for (int64_t j = 0; j < n; j += PACK_TILE) {
        int64_t len = n - j < PACK_TILE ? n - j : PACK_TILE;
        keep_span(keep, len, offset + (uint64_t)j, block, k0, k1, lo, width);
        if (total == 0) {  /* nothing kept in a correct call: zeros, and count the bits */
            memset((char *)out + j * size, 0, (size_t)len * size);
            for (int64_t t = 0; t < len; ++t) count += keep[t];
            continue;
        }
        if (dtype == F32) {
            const uint32_t *src = (const uint32_t *)packed;
            uint32_t *dst = (uint32_t *)out + j;
            for (int64_t t = 0; t < len; ++t) {
                uint32_t value = src[count < total ? count : total - 1];
                dst[t] = value & (0u - (uint32_t)keep[t]);
                count += keep[t];
            }
        } else {
            const uint16_t *src = (const uint16_t *)packed;
            uint16_t *dst = (uint16_t *)out + j;
            for (int64_t t = 0; t < len; ++t) {
                uint16_t value = src[count < total ? count : total - 1];
                dst[t] = value & (uint16_t)(0u - (uint32_t)keep[t]);
                count += keep[t];
            }
        }
    }
    return count;
}
