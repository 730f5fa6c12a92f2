/* Load-to-use latency of this machine's memory, one thread: a random pointer chase through a
 * buffer of N MB, one 64-byte line per step, so every load waits for the one before. That is what
 * a verify pays for its subject's index slot and row, and what tells cache from memory here.
 *
 *   gcc -O2 bench/latency.c -o target/latency
 *   for mb in 1 2 4 16 64 256; do target/latency $mb 1; done     (second argument: 1 = huge pages)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: latency MB HUGE(0|1)\n");
        return 2;
    }
    size_t lines = (size_t)atoi(argv[1]) * 1024 * 1024 / 64;
    char *buffer = aligned_alloc(1 << 21, lines * 64);
    if (!buffer) return 1;
    if (atoi(argv[2])) madvise(buffer, lines * 64, MADV_HUGEPAGE);
    size_t *order = malloc(lines * sizeof(size_t));
    for (size_t i = 0; i < lines; i++) order[i] = i;
    uint64_t state = 88172645463325252ull;
    for (size_t i = lines - 1; i > 0; i--) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        size_t j = state % (i + 1), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    /* One cycle through every line, in shuffled order. */
    for (size_t i = 0; i < lines; i++) *(size_t *)(buffer + order[i] * 64) = order[(i + 1) % lines] * 64;
    size_t at = 0, steps = 2000000;
    double start = now();
    for (size_t i = 0; i < steps; i++) at = *(size_t *)(buffer + at);
    double seconds = now() - start;
    printf("%s MB, huge pages %s: %.1f ns a load (%zu)\n", argv[1], argv[2], seconds / steps * 1e9, at & 1);
    return 0;
}
