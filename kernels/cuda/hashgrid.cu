// Hash-grid encoding (instant-NGP): forward, and backward to the table and the positions.
//
// Same conventions as kernels/hashgrid_config.py (the torch reference is the oracle):
// level l has resolution N_l; a point is clamped to [0, 1]^3 and scaled by N_l; its
// cell's lower vertex is floor(x * N_l) capped at N_l - 1; dense levels index vertices as
// i + j*(N_l+1) + k*(N_l+1)^2, hashed levels as (i ^ j*2654435761 ^ k*805459861) mod 2^T.
//
// Launch: grid (ceil(N / blockDim.x), L), one thread per (point, level), so a block reads
// one level's table. `levels` is int32 [4, L]: resolution, first row, rows, dense flag.
// Plain extern "C" symbols so CuPy's RawModule finds them by name in the fatbin/PTX.

#define HASHGRID_MAX_FEATURES 8

struct LevelParams {
    int res, base, rows, dense;
};

__device__ __forceinline__ LevelParams level_params(const int* levels, int level, int n_levels) {
    return {levels[level], levels[n_levels + level], levels[2 * n_levels + level],
            levels[3 * n_levels + level]};
}

__device__ __forceinline__ int vertex_row(int ix, int iy, int iz, const LevelParams& p) {
    if (p.dense) {
        const int side = p.res + 1;
        return ix + side * (iy + side * iz);
    }
    // uint32 arithmetic wraps mod 2^32, as the hash requires; rows is a power of two.
    const unsigned int h = (unsigned int)ix ^ ((unsigned int)iy * 2654435761u) ^
                           ((unsigned int)iz * 805459861u);
    return (int)(h & (unsigned int)(p.rows - 1));
}

// Lower vertex, fraction within the cell, and whether x was inside [0, 1] (the clamp
// passes gradient only there, as torch.clamp does).
__device__ __forceinline__ void cell_of(float x, float resf, int* cell, float* frac, bool* inside) {
    *inside = x >= 0.0f && x <= 1.0f;
    const float pos = fminf(fmaxf(x, 0.0f), 1.0f) * resf;
    const float c = fminf(floorf(pos), resf - 1.0f);
    *cell = (int)c;
    *frac = pos - c;
}

extern "C" __global__ void hashgrid_fwd(const float* __restrict__ x,      // [N, 3]
                                        const float* __restrict__ table,  // [R, F]
                                        const int* __restrict__ levels,   // [4, L]
                                        float* __restrict__ out,          // [N, L * F]
                                        int n_points, int n_levels, int n_features) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int level = blockIdx.y;
    if (i >= n_points) return;
    const LevelParams p = level_params(levels, level, n_levels);
    const float resf = (float)p.res;
    int cell[3];
    float frac[3];
    bool inside[3];
    for (int d = 0; d < 3; ++d) cell_of(x[3 * i + d], resf, &cell[d], &frac[d], &inside[d]);

    float acc[HASHGRID_MAX_FEATURES] = {0.0f};
#pragma unroll
    for (int corner = 0; corner < 8; ++corner) {
        const int bx = corner & 1, by = (corner >> 1) & 1, bz = (corner >> 2) & 1;
        const float w = (bx ? frac[0] : 1.0f - frac[0]) * (by ? frac[1] : 1.0f - frac[1]) *
                        (bz ? frac[2] : 1.0f - frac[2]);
        const int row = p.base + vertex_row(cell[0] + bx, cell[1] + by, cell[2] + bz, p);
        const float* v = table + (size_t)row * n_features;
        // Fixed trip count with a guard keeps acc[] in registers (indices known at compile time).
#pragma unroll
        for (int f = 0; f < HASHGRID_MAX_FEATURES; ++f)
            if (f < n_features) acc[f] += w * v[f];
    }
    float* o = out + (size_t)i * n_levels * n_features + level * n_features;
#pragma unroll
    for (int f = 0; f < HASHGRID_MAX_FEATURES; ++f)
        if (f < n_features) o[f] = acc[f];
}

extern "C" __global__ void hashgrid_bwd(const float* __restrict__ x,         // [N, 3]
                                        const float* __restrict__ table,     // [R, F]
                                        const int* __restrict__ levels,      // [4, L]
                                        const float* __restrict__ grad_out,  // [N, L * F]
                                        float* __restrict__ grad_table,      // [R, F], atomics
                                        float* __restrict__ grad_x,  // [N, 3], atomics (need_dx)
                                        int n_points, int n_levels, int n_features, int need_dx) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int level = blockIdx.y;
    if (i >= n_points) return;
    const LevelParams p = level_params(levels, level, n_levels);
    const float resf = (float)p.res;
    int cell[3];
    float frac[3];
    bool inside[3];
    for (int d = 0; d < 3; ++d) cell_of(x[3 * i + d], resf, &cell[d], &frac[d], &inside[d]);

    float g[HASHGRID_MAX_FEATURES] = {0.0f};
    const float* go = grad_out + (size_t)i * n_levels * n_features + level * n_features;
#pragma unroll
    for (int f = 0; f < HASHGRID_MAX_FEATURES; ++f)
        if (f < n_features) g[f] = go[f];

    float gpos[3] = {0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int corner = 0; corner < 8; ++corner) {
        const int bx = corner & 1, by = (corner >> 1) & 1, bz = (corner >> 2) & 1;
        const float wx = bx ? frac[0] : 1.0f - frac[0];
        const float wy = by ? frac[1] : 1.0f - frac[1];
        const float wz = bz ? frac[2] : 1.0f - frac[2];
        const int row = p.base + vertex_row(cell[0] + bx, cell[1] + by, cell[2] + bz, p);
        const float w = wx * wy * wz;
#pragma unroll
        for (int f = 0; f < HASHGRID_MAX_FEATURES; ++f)
            if (f < n_features) atomicAdd(grad_table + (size_t)row * n_features + f, w * g[f]);
        if (need_dx) {
            const float* v = table + (size_t)row * n_features;
            float dot = 0.0f;  // dL/dw for this corner
#pragma unroll
            for (int f = 0; f < HASHGRID_MAX_FEATURES; ++f)
                if (f < n_features) dot += v[f] * g[f];
            // dw/dfrac on one axis is +1 for the upper vertex, -1 for the lower one.
            gpos[0] += dot * (bx ? 1.0f : -1.0f) * wy * wz;
            gpos[1] += dot * (by ? 1.0f : -1.0f) * wx * wz;
            gpos[2] += dot * (bz ? 1.0f : -1.0f) * wx * wy;
        }
    }
    if (need_dx) {
        for (int d = 0; d < 3; ++d)
            if (inside[d]) atomicAdd(grad_x + 3 * i + d, gpos[d] * resf);
    }
}
