/*
 * Fused GradDrop mask kernel (CPU).
 *
 * Bit-for-bit the same function as graddrop_dist/mask/counter_hash.py (the reference):
 *   c      = (offset + j) / block                      (global draw index, 64 bit)
 *   u      = mix(mix(lo32(c) ^ k0) ^ k1 ^ hi32(c) * GOLDEN)
 *   keep   = u >= threshold                            (threshold in [1, 2^32 - 1])
 *   out[j] = keep ? in[j] * scale : 0
 * Only integer arithmetic decides the bit, and the value path is one IEEE multiply, so
 * every ISA (the target_clones below) gives the same result. No torch headers: the file
 * builds in about a second and is loaded with ctypes, which releases the GIL so Python
 * can run several chunks at once.
 */
#include <stdint.h>
#include <string.h>

#define GOLDEN 0x9E3779B9u

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

static inline float bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    /* Round to nearest even, NaN kept quiet: what torch does for float -> bfloat16. */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Element granularity (block == 1): the hot path, written so gcc vectorizes it. The
 * caller splits ranges so that hi32(offset + j) is constant inside one call.
 *
 * Known zeros are skipped: a tile of TILE elements whose bits are all zero (+0.0, e.g.
 * the embedding rows of tokens absent from the batch) is +0.0 whether kept or dropped,
 * so it is not hashed (written as zeros when out is not in). -0.0 is hashed: a kept -0.0
 * stays -0.0, as in the reference. */
#define TILE 64

static inline int all_zero_bits(const uint32_t *bits, int64_t n) {
    uint32_t any = 0;
    for (int64_t t = 0; t < n; ++t) any |= bits[t];
    return any == 0;
}

static inline int all_zero_halves(const uint16_t *bits, int64_t n) {
    uint16_t any = 0;
    for (int64_t t = 0; t < n; ++t) any |= bits[t];
    return any == 0;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void mask_f32_tile(const float *in, float *out, int64_t n, uint32_t lo0,
                          uint32_t k0, uint32_t hk, uint32_t threshold, float scale,
                          int rescale) {
    if (rescale) {
        for (int64_t j = 0; j < n; ++j) {
            uint32_t u = mix(mix((lo0 + (uint32_t)j) ^ k0) ^ hk);
            out[j] = u >= threshold ? in[j] * scale : 0.0f;
        }
    } else {
        for (int64_t j = 0; j < n; ++j) {
            uint32_t u = mix(mix((lo0 + (uint32_t)j) ^ k0) ^ hk);
            out[j] = u >= threshold ? in[j] : 0.0f;
        }
    }
}

static void mask_f32_elements(const float *in, float *out, int64_t n, uint32_t lo0,
                              uint32_t k0, uint32_t hk, uint32_t threshold, float scale,
                              int rescale) {
    for (int64_t j = 0; j < n; j += TILE) {
        int64_t len = n - j < TILE ? n - j : TILE;
        if (all_zero_bits((const uint32_t *)(in + j), len)) {
            if (out != in) memset(out + j, 0, (size_t)len * sizeof(float));
            continue;
        }
        mask_f32_tile(in + j, out + j, len, lo0 + (uint32_t)j, k0, hk, threshold, scale,
                      rescale);
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void mask_bf16_tile(const uint16_t *in, uint16_t *out, int64_t n, uint32_t lo0,
                           uint32_t k0, uint32_t hk, uint32_t threshold, float scale,
                           int rescale) {
    for (int64_t j = 0; j < n; ++j) {
        uint32_t u = mix(mix((lo0 + (uint32_t)j) ^ k0) ^ hk);
        uint16_t kept = rescale ? f32_to_bf16(bf16_to_f32(in[j]) * scale) : in[j];
        out[j] = u >= threshold ? kept : 0;
    }
}

static void mask_bf16_elements(const uint16_t *in, uint16_t *out, int64_t n, uint32_t lo0,
                               uint32_t k0, uint32_t hk, uint32_t threshold, float scale,
                               int rescale) {
    for (int64_t j = 0; j < n; j += 2 * TILE) {
        int64_t len = n - j < 2 * TILE ? n - j : 2 * TILE;
        if (all_zero_halves(in + j, len)) {
            if (out != in) memset(out + j, 0, (size_t)len * sizeof(uint16_t));
            continue;
        }
        mask_bf16_tile(in + j, out + j, len, lo0 + (uint32_t)j, k0, hk, threshold, scale,
                       rescale);
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void keep_elements(uint8_t *keep, int64_t n, uint32_t lo0, uint32_t k0,
                          uint32_t hk, uint32_t threshold) {
    for (int64_t j = 0; j < n; ++j) {
        uint32_t u = mix(mix((lo0 + (uint32_t)j) ^ k0) ^ hk);
        keep[j] = u >= threshold;
    }
}

/* Split [offset, offset + n) where the high 32 bits of the index change. */
#define FOR_EACH_SEGMENT(BODY)                                                    \
    int64_t done = 0;                                                             \
    while (done < n) {                                                            \
        uint64_t idx = offset + (uint64_t)done;                                   \
        uint64_t room = ((idx >> 32) + 1) * 0x100000000ull - idx;                 \
        int64_t len = (int64_t)((uint64_t)(n - done) < room ? (uint64_t)(n - done) : room); \
        uint32_t lo0 = (uint32_t)idx;                                             \
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

/* Public entry points. dtype: 0 = float32, 1 = bfloat16. in may equal out. */
int graddrop_mask(const void *in, void *out, int dtype, int64_t n, uint64_t offset,
                  uint64_t block, uint32_t k0, uint32_t k1, uint32_t threshold,
                  float scale, int rescale) {
    if (dtype != 0 && dtype != 1) return -1;
    if (block == 1 && dtype == 0) {
        FOR_EACH_SEGMENT(mask_f32_elements((const float *)in + done, (float *)out + done,
                                           len, lo0, k0, hk, threshold, scale, rescale));
        return 0;
    }
    if (block == 1) {
        FOR_EACH_SEGMENT(mask_bf16_elements((const uint16_t *)in + done,
                                            (uint16_t *)out + done, len, lo0, k0, hk,
                                            threshold, scale, rescale));
        return 0;
    }
    /* Row / tensor granularity: one draw per block, then a run of elements. */
    int64_t j = 0;
    while (j < n) {
        uint64_t c;
        int64_t run = block_run(offset, j, n, block, &c);
        int keep = draw(c, k0, k1) >= threshold;
        if (dtype == 0) {
            const float *src = (const float *)in + j;
            float *dst = (float *)out + j;
            for (int64_t r = 0; r < run; ++r)
                dst[r] = keep ? (rescale ? src[r] * scale : src[r]) : 0.0f;
        } else {
            const uint16_t *src = (const uint16_t *)in + j;
            uint16_t *dst = (uint16_t *)out + j;
            for (int64_t r = 0; r < run; ++r)
                dst[r] = keep ? (rescale ? f32_to_bf16(bf16_to_f32(src[r]) * scale) : src[r])
                              : 0;
        }
        j += run;
    }
    return 0;
}

int graddrop_keep(uint8_t *keep, int64_t n, uint64_t offset, uint64_t block, uint32_t k0,
                  uint32_t k1, uint32_t threshold) {
    if (block == 1) {
        FOR_EACH_SEGMENT(keep_elements(keep + done, len, lo0, k0, hk, threshold));
        return 0;
    }
    int64_t j = 0;
    while (j < n) {
        uint64_t c;
        int64_t run = block_run(offset, j, n, block, &c);
        memset(keep + j, draw(c, k0, k1) >= threshold, (size_t)run);
        j += run;
    }
    return 0;
}

/* Communication compaction without a mask in memory: the keep bits of one tile are drawn
 * into a small stack buffer (the vectorized path above), then the kept values are packed
 * contiguously (compress) or the packed values are put back in place (expand). */
#define PACK_TILE 4096

/* Write the kept values of in[0, n) (times scale when rescale) to packed, which has room
 * for n values; returns how many. Branch-free: every value is written at the current end
 * and the end moves only when the value is kept (no mispredicted branch per element).
 * dtype: 0 = float32, 1 = bfloat16. */
int64_t graddrop_compress(const void *in, void *packed, int dtype, int64_t n,
                          uint64_t offset, uint64_t block, uint32_t k0, uint32_t k1,
                          uint32_t threshold, float scale, int rescale) {
    uint8_t keep[PACK_TILE];
    int64_t count = 0;
    for (int64_t j = 0; j < n; j += PACK_TILE) {
        int64_t len = n - j < PACK_TILE ? n - j : PACK_TILE;
        graddrop_keep(keep, len, offset + (uint64_t)j, block, k0, k1, threshold);
        if (dtype == 0) {
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
                dst[count] = rescale ? f32_to_bf16(bf16_to_f32(src[t]) * scale) : src[t];
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
                        uint32_t threshold) {
    uint8_t keep[PACK_TILE];
    int64_t count = 0;
    for (int64_t j = 0; j < n; j += PACK_TILE) {
        int64_t len = n - j < PACK_TILE ? n - j : PACK_TILE;
        graddrop_keep(keep, len, offset + (uint64_t)j, block, k0, k1, threshold);
        if (total == 0) {  /* nothing kept in a correct call: zeros, and count the bits */
            memset((char *)out + j * (dtype == 0 ? 4 : 2), 0, (size_t)len * (dtype == 0 ? 4 : 2));
            for (int64_t t = 0; t < len; ++t) count += keep[t];
            continue;
        }
        if (dtype == 0) {
            const float *src = (const float *)packed;
            float *dst = (float *)out + j;
            for (int64_t t = 0; t < len; ++t) {
                float value = src[count < total ? count : total - 1];
                dst[t] = keep[t] ? value : 0.0f;
                count += keep[t];
            }
        } else {
            const uint16_t *src = (const uint16_t *)packed;
            uint16_t *dst = (uint16_t *)out + j;
            for (int64_t t = 0; t < len; ++t) {
                uint16_t value = src[count < total ? count : total - 1];
                dst[t] = keep[t] ? value : 0;
                count += keep[t];
            }
        }
    }
    return count;
}
