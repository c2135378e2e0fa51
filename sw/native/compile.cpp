// Host-side compile kernels: quantize a float32 weight matrix and encode it in the sparse MAC's
// unstructured format, a pass over the whole buffer each (rows spread over the cores), the
// inner loops branch-free so that the compiler vectorises them (hwprune.native wraps them).
//
// The definitions are the Python ones (hwprune.quant.quantize's float32 path,
// hwprune.compress.compress_unstructured); tests/test_native.py proves the results identical.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

// f(first, last) over [0, n) cut into one range per core (at most 8), in threads.
template <typename F>
void parallel_rows(int64_t n, F f) {
    int64_t t = std::min<int64_t>({(int64_t)std::max(1u, std::thread::hardware_concurrency()),
                                   8, std::max<int64_t>(1, n / 64)});
    std::vector<std::thread> threads;
    for (int64_t i = 1; i < t; ++i)
        threads.emplace_back(f, n * i / t, n * (i + 1) / t);
    f(0, n / t);
    for (auto& th : threads)
        th.join();
}

}  // namespace

extern "C" {

// Largest |w| of each of `rows` rows of k values into amax[r]; returns 1 when a value is NaN or
// Inf, else 0. The bits of |w| (sign cleared) order like the values for finite ones; NaN and
// Inf lie above them all.
int hp_absmax_f32(const float* w, int64_t rows, int64_t k, float* amax) {
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(w);
    std::vector<uint32_t> maxes(rows, 0);
    parallel_rows(rows, [&](int64_t first, int64_t last) {
        for (int64_t r = first; r < last; ++r) {
            uint32_t m = 0;
            for (int64_t i = r * k, end = (r + 1) * k; i < end; ++i) {
                uint32_t a = bits[i] & 0x7fffffffu;
                m = a > m ? a : m;
            }
            maxes[r] = m;
        }
    });
    uint32_t worst = 0;
    for (int64_t r = 0; r < rows; ++r) {
        worst = maxes[r] > worst ? maxes[r] : worst;
        std::memcpy(amax + r, &maxes[r], sizeof(float));
    }
    return worst >= 0x7f800000u;
}

// codes = clip(rint(w / scale), -qmax, qmax) (float32 division, round half to even); scale is
// one value (per_row = 0) or one per row. pos: the columns of row r's non-zero codes from
// pos[r * k] on; row_nnz: their count per row.
void hp_quantize_f32(const float* w, int64_t rows, int64_t k, const float* scale, int per_row,
                     int qmax, int16_t* codes, int32_t* pos, int64_t* row_nnz) {
    const float hi = (float)qmax, lo = -(float)qmax;
    // rint by the 1.5 * 2**23 trick (round half to even, exact below 2**22; anything larger
    // clamps to qmax all the same): unlike nearbyint it vectorises.
    const float magic = 12582912.0f;
    parallel_rows(rows, [=](int64_t first, int64_t last) {
        for (int64_t r = first; r < last; ++r) {
            const float s = scale[per_row ? r : 0];
            const float* wr = w + r * k;
            int16_t* cr = codes + r * k;
            for (int64_t j = 0; j < k; ++j) {
                float q = (wr[j] / s + magic) - magic;
                q = q < lo ? lo : q;
                q = q > hi ? hi : q;
                cr[j] = (int16_t)(int32_t)q;
            }
            int32_t* pr = pos + r * k;
            int64_t n = 0;
            for (int64_t j = 0; j < k; ++j) {      // branch-free compaction of the non-zeros
                pr[n] = (int32_t)j;
                n += cr[j] != 0;
            }
            row_nnz[r] = n;
        }
    });
}

// The slots the unstructured format takes (a padding slot for each 2**skip_bits zeros
// skipped, one slot for an empty row), from the non-zeros' columns; *nm_ok: no aligned group
// of 2**nm_bits inputs holds more than nm_n non-zeros.
int64_t hp_slots(const int32_t* pos, int64_t k, const int64_t* row_nnz, int64_t rows,
                 int skip_bits, int nm_n, int nm_bits, int* nm_ok) {
    int64_t total = 0;
    int ok = 1;
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t n = row_nnz[r];
        const int32_t* pr = pos + r * k;
        int64_t slots = n, prev = -1, run = 0, group = -1;
        for (int64_t i = 0; i < n; ++i) {
            slots += (pr[i] - prev - 1) >> skip_bits;
            prev = pr[i];
            const int64_t g = pr[i] >> nm_bits;
            run = g == group ? run + 1 : 1;
            group = g;
            ok &= run <= nm_n;
        }
        total += n ? slots : 1;
    }
    *nm_ok = ok;
    return total;
}

// The unstructured format's slots, in row order: value, index (the skip since the previous
// non-zero of the row; 2**skip_bits - 1 on a padding slot), end (the row's last slot). The
// arrays hold at least the total hp_slots returned, zeroed.
void hp_emit_unstructured(const int16_t* codes, int64_t k, const int32_t* pos,
                          const int64_t* row_nnz, int64_t rows, int skip_bits, int16_t* value,
                          uint8_t* index, uint8_t* end) {
    const int64_t max_skip = (1 << skip_bits) - 1;
    int64_t at = 0;
    for (int64_t r = 0; r < rows; ++r) {
        const int16_t* cr = codes + r * k;
        const int32_t* pr = pos + r * k;
        const int64_t n = row_nnz[r];
        int64_t prev = -1;
        if (!n) {                           // an empty row: one padding slot
            value[at] = 0;
            index[at++] = 0;
        }
        for (int64_t i = 0; i < n; ++i) {
            const int64_t j = pr[i], skip = j - prev - 1;
            for (int64_t pads = skip >> skip_bits; pads > 0; --pads) {
                value[at] = 0;
                index[at++] = (uint8_t)max_skip;
            }
            value[at] = cr[j];
            index[at++] = (uint8_t)(skip & max_skip);
            prev = j;
        }
        end[at - 1] = 1;
    }
}

}
