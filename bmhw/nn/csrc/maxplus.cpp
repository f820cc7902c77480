// Fused max-plus and log-sum-exp products for BM layers on the CPU (bmhw.nn.kernels compiles this on first
// use, with g++ -O3 -march=native -fopenmp). y[n, o] = R_k (u[n, k] + v[o, k]) with R the hard maximum or
// (1/a) ln sum_k exp(a t_k).
//
// Nothing of size N x O x K is ever stored: each output is reduced in registers. The forward works on
// tiles of ROWS rows x one vector register of consecutive outputs, with v transposed to (K, O), and every
// u[n, k] is broadcast once per tile.
// Threads (OpenMP) take tiles of rows; no two threads write the same output.
// The hard max keeps the first (smallest) k among equal maxima: ties resolve the same way every run.
//
// Groups (several maxima per neuron, docs/neurons.md): the hard-max kernels take the bounds of G contiguous
// groups of k, 0 = b_0 < b_1 < ... < b_G = K, and reduce each group on its own; the result has G rows per
// input row, row n * G + g holding group g's maxima (G = 1: one group, the plain product).
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <omp.h>
#include <vector>

namespace {

// Rows of a tile: its maxima and arg-maxima stay in vector registers (4 x 8 floats and 4 x 8 indices with AVX2).
constexpr int64_t ROWS = 4;

// One AVX2 register of T (8 floats or 4 doubles); GCC's vector extensions keep the tile in registers.
template <typename T>
struct Vec {
    typedef T type __attribute__((vector_size(32)));
};

// One register of v^T's row kk from column c0 on (zeros past the last of the `cols` outputs).
template <typename T>
inline typename Vec<T>::type load_v(const T* vt, int64_t kk, int64_t o, int64_t c0, int64_t cols) {
    typedef typename Vec<T>::type V;
    constexpr int64_t L = 32 / sizeof(T);
    V vv;
    if (cols == L) {
        std::memcpy(&vv, vt + kk * o + c0, sizeof vv);
    } else {  // the last, partial column tile
        T pad[L] = {};
        std::memcpy(pad, vt + kk * o + c0, cols * sizeof(T));
        std::memcpy(&vv, pad, sizeof vv);
    }
    return vv;
}

// The running maxima and first arg-maxima of a tile of 4 rows x one register of outputs.
template <typename T>
struct MaxTile {
    typedef typename Vec<T>::type V;
    V b0, b1, b2, b3, a0, a1, a2, a3, kf;

    // A group starting at k = first: a group whose terms are all -inf keeps that first k.
    explicit MaxTile(int64_t first = 0) {
        b0 = b1 = b2 = b3 = V{} - std::numeric_limits<T>::infinity();
        a0 = a1 = a2 = a3 = kf = V{} + T(first);
    }

    // One k: the sums x_r + v, compared with the maxima (strictly: the first maximum keeps its index).
    inline void step(V vv, T x0, T x1, T x2, T x3) {
        const V t0 = vv + x0, t1 = vv + x1, t2 = vv + x2, t3 = vv + x3;
        const auto m0 = t0 > b0, m1 = t1 > b1, m2 = t2 > b2, m3 = t3 > b3;
        b0 = m0 ? t0 : b0;
        a0 = m0 ? kf : a0;
        b1 = m1 ? t1 : b1;
        a1 = m1 ? kf : a1;
        b2 = m2 ? t2 : b2;
        a2 = m2 ? kf : a2;
        b3 = m3 ? t3 : b3;
        a3 = m3 ? kf : a3;
        kf += T(1);
    }

    // Rows r0 .. r0 + rows - 1 of group g of G: result rows (r0 + r) * G + g.
    void store(T* y, int32_t* idx, int64_t r0, int64_t rows, int64_t c0, int64_t cols, int64_t o, int64_t groups,
               int64_t g) const {
        const V best[ROWS] = {b0, b1, b2, b3}, arg[ROWS] = {a0, a1, a2, a3};
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) {
                // A row of NaNs or -inf keeps the group's first k, like torch.max.
                const int64_t at = ((r0 + r) * groups + g) * o + c0 + c;
                y[at] = best[r][c];
                idx[at] = static_cast<int32_t>(arg[r][c]);
            }
    }
};

// A tile is 4 rows x one register of outputs: 4 running maxima and 4 arg-maxima (kept in T, exact for
// k < 2^24 in float, so that compare and selects are lanes of one vector type) stay in registers while k
// runs; each step is one load of v, four broadcasts of u, four adds, compares and two selects each.
template <typename T>
void max_forward_kernel(const T* u, const T* vt, T* y, int32_t* idx, int64_t n, int64_t o, int64_t k,
                        const std::vector<int64_t>& bounds) {
    constexpr int64_t L = 32 / sizeof(T);
    const int64_t groups = static_cast<int64_t>(bounds.size()) - 1;
#pragma omp parallel for schedule(static)
    for (int64_t r0 = 0; r0 < n; r0 += ROWS) {
        const int64_t rows = std::min(ROWS, n - r0);
        const T* urow[ROWS];
        for (int64_t r = 0; r < ROWS; ++r) urow[r] = u + (r0 + std::min(r, rows - 1)) * k;  // a partial tile repeats its last row
        for (int64_t c0 = 0; c0 < o; c0 += L) {
            const int64_t cols = std::min(L, o - c0);
            for (int64_t g = 0; g < groups; ++g) {
                MaxTile<T> tile(bounds[g]);
                for (int64_t kk = bounds[g]; kk < bounds[g + 1]; ++kk)
                    tile.step(load_v(vt, kk, o, c0, cols), urow[0][kk], urow[1][kk], urow[2][kk], urow[3][kk]);
                tile.store(y, idx, r0, rows, c0, cols, o, groups, g);
            }
        }
    }
}

// The same product for a convolution without unfolding it: u is the (log) image (B, C, H, W), read
// through the window of each output position (zero outside the image: the caller's padding value), and
// rows n = (b * HO + oh) * WO + ow, the order of BMConv2d.patches.
struct ConvGeometry {
    int64_t c, h, w, kh, kw, sh, sw, ph, pw, ho, wo;
};

// Each k of a window (channel, then kernel row and column): its pixel offset from the window's origin, and its row
// and column in the window (for the padding check).
struct WindowTable {
    std::vector<int64_t> koff, dh, dw;

    explicit WindowTable(const ConvGeometry& g) {
        const int64_t k = g.c * g.kh * g.kw;
        koff.resize(k);
        dh.resize(k);
        dw.resize(k);
        for (int64_t cc = 0, kk = 0; cc < g.c; ++cc)
            for (int64_t i = 0; i < g.kh; ++i)
                for (int64_t j = 0; j < g.kw; ++j, ++kk) {
                    koff[kk] = (cc * g.h + i) * g.w + j;
                    dh[kk] = i;
                    dw[kk] = j;
                }
    }
};

template <typename T>
void max_conv_forward_kernel(const T* img, const T* vt, T* y, int32_t* idx, const ConvGeometry& g, int64_t o,
                             int64_t nrows, const std::vector<int64_t>& bounds) {
    constexpr int64_t L = 32 / sizeof(T);
    const int64_t groups = static_cast<int64_t>(bounds.size()) - 1;
    const WindowTable table(g);
    const std::vector<int64_t>&koff = table.koff, &dh = table.dh, &dw = table.dw;
    const int64_t per_image = g.ho * g.wo;
    const bool padded = g.ph > 0 || g.pw > 0;
#pragma omp parallel for schedule(static)
    for (int64_t r0 = 0; r0 < nrows; r0 += ROWS) {
        const int64_t rows = std::min(ROWS, nrows - r0);
        const T* base[ROWS];
        int64_t ih0[ROWS], iw0[ROWS];
        for (int64_t r = 0; r < ROWS; ++r) {
            const int64_t row = r0 + std::min(r, rows - 1);
            const int64_t b = row / per_image, pos = row % per_image;
            ih0[r] = (pos / g.wo) * g.sh - g.ph;
            iw0[r] = (pos % g.wo) * g.sw - g.pw;
            // The window's origin; with padding it may lie outside the image, and is then only offset, never read.
            base[r] = img + b * g.c * g.h * g.w + ih0[r] * g.w + iw0[r];
        }
        for (int64_t c0 = 0; c0 < o; c0 += L) {
            const int64_t cols = std::min(L, o - c0);
            for (int64_t gr = 0; gr < groups; ++gr) {
                MaxTile<T> tile(bounds[gr]);
                for (int64_t kk = bounds[gr]; kk < bounds[gr + 1]; ++kk) {
                    T x[ROWS];
                    const int64_t off = koff[kk];
                    if (!padded) {
                        for (int64_t r = 0; r < ROWS; ++r) x[r] = base[r][off];
                    } else {
                        for (int64_t r = 0; r < ROWS; ++r) {
                            const int64_t ih = ih0[r] + dh[kk], iw = iw0[r] + dw[kk];
                            const bool inside = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
                            x[r] = inside ? base[r][off] : T(0);
                        }
                    }
                    tile.step(load_v(vt, kk, o, c0, cols), x[0], x[1], x[2], x[3]);
                }
                tile.store(y, idx, r0, rows, c0, cols, o, groups, gr);
            }
        }
    }
}

// The image's gradient: each output's to the pixel of its arg-max (nothing for a padded one); one thread
// per image, so no two threads add to the same pixel.
template <typename T>
void max_conv_backward_kernel(const T* grad, const int32_t* idx, T* gimg, const ConvGeometry& g, int64_t o,
                              int64_t batch, int64_t groups, const T* scale) {
    const int64_t per_image = g.ho * g.wo;
    // Window offsets looked up instead of divided out per term (the scatter is as long as the forward's result:
    // rows x groups x outputs).
    const WindowTable table(g);
    const std::vector<int64_t>&koff = table.koff, &dh = table.dh, &dw = table.dw;
    const bool padded = g.ph > 0 || g.pw > 0;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < batch; ++b) {
        T* gi = gimg + b * g.c * g.h * g.w;
        for (int64_t pos = 0; pos < per_image * groups; ++pos) {
            const int64_t row = b * per_image * groups + pos, at = pos / groups;  // result row, output position
            const int64_t ih0 = (at / g.wo) * g.sh - g.ph, iw0 = (at % g.wo) * g.sw - g.pw;
            T* origin = gi + ih0 * g.w + iw0;  // may lie outside the image when padded: then only offset, never written
            const int32_t* irow = idx + row * o;
            const T* grow = grad + row * o;
            const T* srow = scale ? scale + (row / groups) * o : nullptr;  // see max_backward_kernel
            if (!padded) {
                for (int64_t c = 0; c < o; ++c) origin[koff[irow[c]]] += srow ? grow[c] * srow[c] : grow[c];
                continue;
            }
            for (int64_t c = 0; c < o; ++c) {
                const int64_t kk = irow[c], ih = ih0 + dh[kk], iw = iw0 + dw[kk];
                if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) origin[koff[kk]] += srow ? grow[c] * srow[c] : grow[c];
            }
        }
    }
}

// exp(x) for x <= 0 in a form the compiler vectorises (std::exp is a library call it does not): x = n ln 2 + r
// with |r| <= ln 2 / 2, exp(r) by its Taylor series (degree 7 for float, 13 for double: below one unit in
// the last place), 2^n by building the exponent bits. Arguments below the smallest normal are clamped
// (the result is then ~1e-38 or ~1e-308 instead of 0: negligible next to the sum's largest term, 1).
template <typename T>
struct FastExp;

template <>
struct FastExp<float> {
    static inline float eval(float x) {
        x = x < -87.0f ? -87.0f : x;
        const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
        const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
        float p = 1.0f / 5040;
        p = p * r + 1.0f / 720;
        p = p * r + 1.0f / 120;
        p = p * r + 1.0f / 24;
        p = p * r + 1.0f / 6;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
        float scale;
        __builtin_memcpy(&scale, &bits, sizeof scale);
        return p * scale;
    }
};

template <>
struct FastExp<double> {
    static inline double eval(double x) {
        x = x < -708.0 ? -708.0 : x;
        const double n = __builtin_floor(x * 1.4426950408889634 + 0.5);
        const double r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
        double p = 1.0 / 6227020800.0;
        const double coef[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                               1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
        for (double c : coef) p = p * r + c;
        const int64_t bits = (static_cast<int64_t>(n) + 1023) << 52;
        double scale;
        __builtin_memcpy(&scale, &bits, sizeof scale);
        return p * scale;
    }
};

// The same exp on a whole register (GCC vector extensions): the compiler does not vectorise the scalar one.
template <typename T>
struct VecExp;

template <>
struct VecExp<float> {
    typedef Vec<float>::type V;
    typedef int32_t I __attribute__((vector_size(32)));
    static inline V eval(V x) {
        x = x < -87.0f ? V{} - 87.0f : x;
        const V y = x * 1.44269504088896341f + 0.5f;
        I ni = __builtin_convertvector(y, I);
        ni += (__builtin_convertvector(ni, V) > y);  // truncation to floor: a true mask lane is -1
        const V n = __builtin_convertvector(ni, V);
        const V r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
        V p = V{} + 1.0f / 5040;
        p = p * r + 1.0f / 720;
        p = p * r + 1.0f / 120;
        p = p * r + 1.0f / 24;
        p = p * r + 1.0f / 6;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        const I bits = (ni + 127) << 23;
        return p * reinterpret_cast<const V&>(bits);
    }
};

template <>
struct VecExp<double> {
    typedef Vec<double>::type V;
    typedef int64_t I __attribute__((vector_size(32)));
    static inline V eval(V x) {
        x = x < -708.0 ? V{} - 708.0 : x;
        const V y = x * 1.4426950408889634 + 0.5;
        I ni = __builtin_convertvector(y, I);
        ni += (__builtin_convertvector(ni, V) > y);
        const V n = __builtin_convertvector(ni, V);
        const V r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
        V p = V{} + 1.0 / 6227020800.0;
        const double coef[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                               1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
        for (double c : coef) p = p * r + c;
        const I bits = (ni + 1023) << 52;
        return p * reinterpret_cast<const V&>(bits);
    }
};

// y = m + ln(sum_k exp(a (t_k - m))) / a with m = max_k t_k: stable for any a > 0. Tiles as in the max.
template <typename T>
void lse_forward_kernel(const T* u, const T* vt, const T* m, T* y, T a, int64_t n, int64_t o, int64_t k) {
    typedef typename Vec<T>::type V;
    constexpr int64_t L = 32 / sizeof(T);
#pragma omp parallel for schedule(static)
    for (int64_t r0 = 0; r0 < n; r0 += ROWS) {
        const int64_t rows = std::min(ROWS, n - r0);
        const T* urow[ROWS];
        for (int64_t r = 0; r < ROWS; ++r) urow[r] = u + (r0 + std::min(r, rows - 1)) * k;
        for (int64_t c0 = 0; c0 < o; c0 += L) {
            const int64_t cols = std::min(L, o - c0);
            V top[ROWS], sum[ROWS];
            for (int64_t r = 0; r < ROWS; ++r) {
                T pad[L] = {};
                std::memcpy(pad, m + (r0 + std::min(r, rows - 1)) * o + c0, cols * sizeof(T));
                std::memcpy(&top[r], pad, sizeof(V));
                sum[r] = V{};
            }
            for (int64_t kk = 0; kk < k; ++kk) {
                const V vv = load_v(vt, kk, o, c0, cols);
                for (int64_t r = 0; r < ROWS; ++r) sum[r] += VecExp<T>::eval(a * (vv + urow[r][kk] - top[r]));
            }
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t c = 0; c < cols; ++c)
                    y[(r0 + r) * o + c0 + c] = top[r][c] + std::log(sum[r][c]) / a;
        }
    }
}

// p = exp(a (t - y)) is the softmax weight of term k; dy/dt = p, dy/da = (sum_k p t_k - y) / a.
// grad_u[n, k] = sum_o g p, by rows (one thread per row block); grad_v[o, k] = sum_n g p, by outputs. The
// k loops run a register at a time.
template <typename T>
void lse_backward_kernel(const T* u, const T* v, const T* y, const T* g, T a, T* gu, T* gv, T* ga, int64_t n,
                         int64_t o, int64_t k) {
    typedef typename Vec<T>::type V;
    constexpr int64_t L = 32 / sizeof(T);
    const int64_t k_vec = k - k % L;
    T alpha_sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : alpha_sum)
    for (int64_t row = 0; row < n; ++row) {
        const T* ur = u + row * k;
        T* gur = gu + row * k;
        for (int64_t c = 0; c < o; ++c) {
            const T gy = g[row * o + c];
            if (gy == 0) continue;
            const T yy = y[row * o + c];
            const T* vc = v + c * k;
            V ptv = {};
            for (int64_t kk = 0; kk < k_vec; kk += L) {
                V uu, vv, gg;
                std::memcpy(&uu, ur + kk, sizeof uu);
                std::memcpy(&vv, vc + kk, sizeof vv);
                std::memcpy(&gg, gur + kk, sizeof gg);
                const V t = uu + vv;
                const V p = VecExp<T>::eval(a * (t - yy));
                gg += gy * p;
                std::memcpy(gur + kk, &gg, sizeof gg);
                ptv += p * t;
            }
            T pt = 0;
            for (int64_t l = 0; l < L; ++l) pt += ptv[l];
            for (int64_t kk = k_vec; kk < k; ++kk) {
                const T t = ur[kk] + vc[kk];
                const T p = FastExp<T>::eval(a * (t - yy));
                gur[kk] += gy * p;
                pt += p * t;
            }
            alpha_sum += gy * (pt - yy) / a;
        }
    }
    *ga = alpha_sum;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < o; ++c) {
        const T* vc = v + c * k;
        T* gvc = gv + c * k;
        for (int64_t row = 0; row < n; ++row) {
            const T gy = g[row * o + c];
            if (gy == 0) continue;
            const T yy = y[row * o + c];
            const T* ur = u + row * k;
            for (int64_t kk = 0; kk < k_vec; kk += L) {
                V uu, vv, gg;
                std::memcpy(&uu, ur + kk, sizeof uu);
                std::memcpy(&vv, vc + kk, sizeof vv);
                std::memcpy(&gg, gvc + kk, sizeof gg);
                gg += gy * VecExp<T>::eval(a * (uu + vv - yy));
                std::memcpy(gvc + kk, &gg, sizeof gg);
            }
            for (int64_t kk = k_vec; kk < k; ++kk) gvc[kk] += gy * FastExp<T>::eval(a * (ur[kk] + vc[kk] - yy));
        }
    }
}

// n result rows, `groups` of them per row of u.
template <typename T>
// ``scale`` (or null): each term's gradient is g[row, c] * scale[row / groups, c] (the fused exp-and-sum path
// passes the exps as g and the output gradient as scale, so that their product is never stored).
void max_backward_kernel(const T* g, const int32_t* idx, T* gu, T* gv, int64_t n, int64_t o, int64_t k,
                         int64_t groups, const T* scale) {
    if (gu != nullptr) {
#pragma omp parallel for schedule(static)
        for (int64_t nu = 0; nu < n / groups; ++nu) {
            const T* srow = scale ? scale + nu * o : nullptr;
            for (int64_t row = nu * groups; row < (nu + 1) * groups; ++row)
                for (int64_t c = 0; c < o; ++c)
                    gu[nu * k + idx[row * o + c]] += srow ? g[row * o + c] * srow[c] : g[row * o + c];
        }
    }
    if (gv != nullptr) {
        // Each thread owns a contiguous range of outputs and reads the rows in order (each output's sum keeps
        // the row order, so the result does not depend on the number of threads).
        const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(o, omp_get_max_threads()));
#pragma omp parallel for schedule(static)
        for (int64_t part = 0; part < parts; ++part) {
            const int64_t c0 = o * part / parts, c1 = o * (part + 1) / parts;
            for (int64_t row = 0; row < n; ++row) {
                const T* srow = scale ? scale + (row / groups) * o : nullptr;
                for (int64_t c = c0; c < c1; ++c)
                    gv[c * k + idx[row * o + c]] += srow ? g[row * o + c] * srow[c] : g[row * o + c];
            }
        }
    }
}

void check(const torch::Tensor& u, const torch::Tensor& v) {
    TORCH_CHECK(u.dim() == 2 && v.dim() == 2 && u.size(1) == v.size(1), "maxplus needs u (N, K) and v (O, K)");
    TORCH_CHECK(u.device().is_cpu() && v.device().is_cpu(), "the C++ maxplus kernels run on the CPU");
    TORCH_CHECK(u.scalar_type() == v.scalar_type(), "u and v must have the same dtype");
    TORCH_CHECK(u.size(1) < (int64_t(1) << 24), "fan-in above 2^24: the kernels keep indices in float");
}

}  // namespace

// The group bounds b_0 = 0 < ... < b_G = k (empty: one group, the whole fan-in).
static std::vector<int64_t> checked_bounds(std::vector<int64_t> bounds, int64_t k) {
    if (bounds.empty()) return {0, k};
    TORCH_CHECK(bounds.size() >= 2 && bounds.front() == 0 && bounds.back() == k,
                "group bounds must run from 0 to the fan-in");
    for (size_t i = 1; i < bounds.size(); ++i) TORCH_CHECK(bounds[i] > bounds[i - 1], "group bounds must increase");
    return bounds;
}

// y and the first arg-max (per group) of a contiguous u (N, K) and v^T (K, O): (N * G, O) each.
static std::vector<torch::Tensor> max_forward_transposed(const torch::Tensor& u, const torch::Tensor& vt,
                                                         const std::vector<int64_t>& bounds) {
    const int64_t n = u.size(0), k = u.size(1), o = vt.size(1), groups = int64_t(bounds.size()) - 1;
    auto y = torch::empty({n * groups, o}, u.options());
    auto idx = torch::empty({n * groups, o}, u.options().dtype(torch::kInt32));
    AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "max_forward", [&] {
        max_forward_kernel<scalar_t>(u.data_ptr<scalar_t>(), vt.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                     idx.data_ptr<int32_t>(), n, o, k, bounds);
    });
    return {y, idx};
}

std::vector<torch::Tensor> max_forward(torch::Tensor u, torch::Tensor v, std::vector<int64_t> bounds) {
    check(u, v);
    return max_forward_transposed(u.contiguous(), v.t().contiguous(), checked_bounds(bounds, u.size(1)));
}

// The hard max's backward is a scatter: each output's gradient goes to its one arg-max. g and idx have
// `groups` rows per row of u.
std::vector<torch::Tensor> max_backward(torch::Tensor g, torch::Tensor idx, int64_t k, bool need_u, bool need_v,
                                        int64_t groups, c10::optional<torch::Tensor> scale) {
    g = g.contiguous();
    idx = idx.contiguous();
    torch::Tensor sc = scale.has_value() ? scale->contiguous() : torch::Tensor();
    TORCH_CHECK(!sc.defined() || sc.numel() * groups == g.numel(),
                "max_backward: scale must be (rows / groups, outputs)");
    const int64_t n = g.size(0), o = g.size(1);
    TORCH_CHECK(groups >= 1 && n % groups == 0, "max_backward: rows must be a multiple of the groups");
    auto gu = need_u ? torch::zeros({n / groups, k}, g.options()) : torch::Tensor();
    auto gv = need_v ? torch::zeros({o, k}, g.options()) : torch::Tensor();
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "max_backward", [&] {
        max_backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(),
                                      need_u ? gu.data_ptr<scalar_t>() : nullptr,
                                      need_v ? gv.data_ptr<scalar_t>() : nullptr, n, o, k, groups,
                                      sc.defined() ? sc.data_ptr<scalar_t>() : nullptr);
    });
    return {gu, gv};
}

ConvGeometry geometry(const torch::Tensor& img, const std::vector<int64_t>& kernel) {
    TORCH_CHECK(img.dim() == 4 && kernel.size() == 6, "max_conv needs an image (B, C, H, W) and kh, kw, sh, sw, ph, pw");
    ConvGeometry g{img.size(1), img.size(2), img.size(3), kernel[0], kernel[1], kernel[2], kernel[3], kernel[4],
                   kernel[5], 0, 0};
    g.ho = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
    g.wo = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
    return g;
}

std::vector<torch::Tensor> max_conv_forward(torch::Tensor img, torch::Tensor v, std::vector<int64_t> kernel,
                                            std::vector<int64_t> bounds) {
    img = img.contiguous();
    const ConvGeometry g = geometry(img, kernel);
    TORCH_CHECK(v.dim() == 2 && v.size(1) == g.c * g.kh * g.kw, "v must be (O, C * kh * kw)");
    TORCH_CHECK(img.scalar_type() == v.scalar_type() && img.device().is_cpu(), "image and v: same dtype, on the CPU");
    bounds = checked_bounds(bounds, v.size(1));
    auto vt = v.t().contiguous();
    const int64_t o = v.size(0), nrows = img.size(0) * g.ho * g.wo, groups = int64_t(bounds.size()) - 1;
    auto y = torch::empty({nrows * groups, o}, img.options());
    auto idx = torch::empty({nrows * groups, o}, img.options().dtype(torch::kInt32));
    AT_DISPATCH_FLOATING_TYPES(img.scalar_type(), "max_conv_forward", [&] {
        max_conv_forward_kernel<scalar_t>(img.data_ptr<scalar_t>(), vt.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                          idx.data_ptr<int32_t>(), g, o, nrows, bounds);
    });
    return {y, idx};
}

torch::Tensor max_conv_backward_image(torch::Tensor grad, torch::Tensor idx, std::vector<int64_t> shape,
                                      std::vector<int64_t> kernel, int64_t groups, c10::optional<torch::Tensor> scale) {
    grad = grad.contiguous();
    idx = idx.contiguous();
    torch::Tensor sc = scale.has_value() ? scale->contiguous() : torch::Tensor();
    TORCH_CHECK(!sc.defined() || sc.numel() * groups == grad.numel(),
                "max_conv_backward: scale must be (rows / groups, outputs)");
    auto gimg = torch::zeros(shape, grad.options());
    const ConvGeometry g = geometry(gimg, kernel);
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "max_conv_backward", [&] {
        max_conv_backward_kernel<scalar_t>(grad.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), gimg.data_ptr<scalar_t>(),
                                           g, grad.size(1), shape[0], groups,
                                           sc.defined() ? sc.data_ptr<scalar_t>() : nullptr);
    });
    return gimg;
}

torch::Tensor lse_forward(torch::Tensor u, torch::Tensor v, double alpha) {
    check(u, v);
    TORCH_CHECK(alpha > 0, "the LSE temperature alpha must be positive");
    u = u.contiguous();
    auto vt = v.t().contiguous();
    auto max_out = max_forward_transposed(u, vt, {0, u.size(1)});
    const int64_t n = u.size(0), k = u.size(1), o = v.size(0);
    auto y = torch::empty({n, o}, u.options());
    AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "lse_forward", [&] {
        lse_forward_kernel<scalar_t>(u.data_ptr<scalar_t>(), vt.data_ptr<scalar_t>(),
                                     max_out[0].data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                     static_cast<scalar_t>(alpha), n, o, k);
    });
    return y;
}

std::vector<torch::Tensor> lse_backward(torch::Tensor g, torch::Tensor u, torch::Tensor v, torch::Tensor y,
                                        double alpha) {
    g = g.contiguous();
    u = u.contiguous();
    v = v.contiguous();
    y = y.contiguous();
    const int64_t n = u.size(0), k = u.size(1), o = v.size(0);
    auto gu = torch::zeros_like(u);
    auto gv = torch::zeros_like(v);
    auto ga = torch::zeros({}, u.options());
    AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "lse_backward", [&] {
        lse_backward_kernel<scalar_t>(u.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                      g.data_ptr<scalar_t>(), static_cast<scalar_t>(alpha), gu.data_ptr<scalar_t>(),
                                      gv.data_ptr<scalar_t>(), ga.data_ptr<scalar_t>(), n, o, k);
    });
    return {gu, gv, ga};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("max_forward", &max_forward, "hard max-plus product per group: (y, first arg-max as int32)");
    m.def("max_backward", &max_backward, "scatter of the hard max's gradient to its arg-max");
    m.def("max_conv_forward", &max_conv_forward, "hard max-plus product of a convolution, read from the image");
    m.def("max_conv_backward_image", &max_conv_backward_image, "the image's gradient of max_conv_forward");
    m.def("lse_forward", &lse_forward, "log-sum-exp max-plus product with temperature alpha");
    m.def("lse_backward", &lse_backward, "gradients of the LSE product: u, v and alpha");
}
