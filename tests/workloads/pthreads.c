/* A C workload built with gcc at test time: three pthreads doing floating-point work over a
 * checksummed heap buffer. Each tick appends "tick N ok|bad pid=P" to the report file. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define WORDS (1u << 20)
static uint64_t *buf;
static atomic_int bad;
static atomic_ulong spins[3];

static uint64_t sum(void) {
    uint64_t s = 0;
    for (uint32_t i = 0; i < WORDS; i++) s += buf[i] ^ i;
    return s;
}

static void *spin(void *arg) {
    long id = (long)arg;
    for (;;) {
        double a = 1.0 + id, b = 0.5;
        for (int i = 0; i < 100000; i++) { a = a * 0.9999999 + 1e-7; b = b + a * 1e-9; }
        double a2 = 1.0 + id, b2 = 0.5;
        for (int i = 0; i < 100000; i++) { a2 = a2 * 0.9999999 + 1e-7; b2 = b2 + a2 * 1e-9; }
        if (a != a2 || b != b2) atomic_store(&bad, 1);
        atomic_fetch_add(&spins[id], 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    buf = malloc(WORDS * sizeof(uint64_t));
    for (uint32_t i = 0; i < WORDS; i++) buf[i] = (uint64_t)i * 2654435761u;
    uint64_t want = sum();
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], NULL, spin, (void *)i);
    for (unsigned long n = 1;; n++) {
        int ok = sum() == want && !atomic_load(&bad);
        FILE *f = fopen(argv[1], "a");
        if (!f) return 1;
        fprintf(f, "tick %lu %s pid=%d spins=%lu,%lu,%lu\n", n, ok ? "ok" : "bad", getpid(),
                atomic_load(&spins[0]), atomic_load(&spins[1]), atomic_load(&spins[2]));
        fclose(f);
        usleep(50000);
    }
}
