/* Read bandwidth of this machine, one thread, for the fast scan's figures: how fast can one core
 * stream N bytes that are already in memory (or cache)? Four independent 256-bit accumulators, so
 * the adds never limit it; the best of several passes, so a noisy neighbour only lowers the worst.
 *
 *   gcc -O2 -mavx2 bench/bandwidth.c -o target/bandwidth
 *   for kb in 512 6400 16000 64000 1048576; do target/bandwidth $kb; done
 *
 * 6400 KB is the fast scan's code stream at 100k templates (64 B each), 64000 KB at 1M.
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t kib = argc > 1 ? strtoul(argv[1], 0, 10) : 65536;
    size_t bytes = (kib << 10) & ~(size_t)127;
    int passes = argc > 2 ? atoi(argv[2]) : (int)(4000000 / (kib + 1) + 5);
    char *buffer = aligned_alloc(64, bytes);
    if (!buffer || bytes == 0) return 1;
    memset(buffer, 1, bytes);
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    double best = 0;
    for (int pass = 0; pass < passes; pass++) {
        double start = now();
        for (size_t i = 0; i < bytes; i += 128) {
            a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(buffer + i)));
            b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(buffer + i + 32)));
            c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(buffer + i + 64)));
            d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(buffer + i + 96)));
        }
        double rate = bytes / (now() - start) / 1e9;
        if (rate > best) best = rate;
    }
    long long sink[4];
    _mm256_storeu_si256((__m256i *)sink, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    printf("{\"kib\": %zu, \"best_gb_per_s\": %.1f, \"passes\": %d, \"sink\": %lld}\n", kib, best, passes, sink[0] & 1);
    free(buffer);
    return 0;
}
