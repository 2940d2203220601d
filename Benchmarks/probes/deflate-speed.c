// How fast do zlib and libdeflate write raw deflate blocks of Hermes-like records, and at what
// ratio? 64 MiB of JSON records (as allegro-bench's payloads, in a DELIVER-like layout) cut into
// blocks of BLOCK bytes; zlib at level 1 (deflateReset per block, as the spill did) against
// libdeflate at levels 1-4, each block also decompressed (timed) and the first checked through
// zlib's inflate. Three rounds.
//   cc -O2 -o /tmp/deflate-speed Benchmarks/probes/deflate-speed.c -ldeflate -lz
//   /tmp/deflate-speed [BLOCK]      (default 65536)
#include <libdeflate.h>
#include <zlib.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static uint64_t s = 0x616c6c6567726f;
static uint64_t next(void) { uint64_t z = (s += 0x9e3779b97f4a7c15ULL); z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL; z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL; return z ^ (z >> 31); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    size_t blockBytes = argc > 1 ? atoi(argv[1]) : 65536;
    const char *kinds[] = {"tool.call","tool.result","llm.request","llm.response","session.start","usage","error"};
    const char *tools[] = {"terminal","read_file","write_file","web_search","patch","browser_navigate","todo"};
    const char *models[] = {"claude-sonnet-4","gpt-5-mini","qwen3-coder","kimi-k2","gemini-2.5-pro"};
    const char *words[] = {"ls -la /srv","git status","pytest -q","cat README.md","grep -rn TODO","curl -s localhost","make build","journalctl -u hermes","df -h","python3 run.py"};
    size_t total = 64 << 20; unsigned char *data = malloc(total); size_t at = 0; uint64_t seq = 1;
    while (at + 256 < total) {
        char payload[512]; int n = snprintf(payload, sizeof payload, "{\"ts\":%llu,\"session\":\"h-%llx\",\"kind\":\"%s\",\"tool\":\"%s\",\"model\":\"%s\",\"tokens\":{\"in\":%llu,\"out\":%llu},\"ms\":%llu,\"ok\":%s,\"args\":\"%s %llu\"}",
            (unsigned long long)(1764000000000ULL + next() % 1000000000), (unsigned long long)(next() % 0xffffff), kinds[next()%7], tools[next()%7], models[next()%5],
            (unsigned long long)(next()%20000), (unsigned long long)(next()%4000), (unsigned long long)(next()%5000), next()%8 ? "true":"false", words[next()%10], (unsigned long long)(next()%100000));
        if (n > 128) n = 128;
        // header: length, seq, ingest ns, producer id, session, kind, payload
        uint32_t len = 56 + n; memcpy(data + at, &len, 4); at += 4;
        memcpy(data + at, &seq, 8); at += 8; seq++;
        uint64_t ns = 1764000000000000000ULL + seq * 100000 + next() % 1000; memcpy(data + at, &ns, 8); at += 8;
        memcpy(data + at, "bench-producer-1", 16); at += 16; memcpy(data + at, "h-3f2a1c", 8); at += 8; memcpy(data + at, "tool.call   ", 12); at += 12;
        memcpy(data + at, payload, n); at += n;
    }
    total = at / blockBytes * blockBytes;
    size_t blocks = total / blockBytes; unsigned char *out = malloc(blockBytes * 2 + 1024), *back = malloc(blockBytes);
    for (int round = 0; round < 3; round++) {
        z_stream z; memset(&z, 0, sizeof z); deflateInit2(&z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
        size_t zout = 0; double t0 = now();
        for (size_t b = 0; b < blocks; b++) { deflateReset(&z); z.next_in = data + b * blockBytes; z.avail_in = blockBytes; z.next_out = out; z.avail_out = blockBytes * 2; deflate(&z, Z_FINISH); zout += z.total_out; }
        double tz = now() - t0; deflateEnd(&z);
        // zlib's inflate of the last block, as often as there are blocks (one output buffer).
        z_stream i; memset(&i, 0, sizeof i); inflateInit2(&i, -15); double ti = now();
        for (size_t b = 0; b < blocks; b++) { inflateReset(&i); i.next_in = out; i.avail_in = z.total_out; i.next_out = back; i.avail_out = blockBytes; if (inflate(&i, Z_FINISH) != Z_STREAM_END) { printf("inflate failed\n"); return 1; } }
        ti = now() - ti; inflateEnd(&i);
        printf("zlib 1      block %6zu: %7.1f MB/s  ratio %.2f  %.1f us/block  decompress %.0f MB/s\n", blockBytes, total / tz / 1e6, (double)total / zout, tz / blocks * 1e6, total / ti / 1e6);
        for (int level = 1; level <= 4; level++) {
            struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
            struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
            size_t lout = 0; double t1 = now(), td = 0;
            for (size_t b = 0; b < blocks; b++) {
                size_t n = libdeflate_deflate_compress(c, data + b * blockBytes, blockBytes, out, blockBytes * 2); lout += n;
                double t2 = now(); size_t got = 0;
                if (libdeflate_deflate_decompress(d, out, n, back, blockBytes, &got) != LIBDEFLATE_SUCCESS || got != blockBytes || memcmp(back, data + b * blockBytes, blockBytes)) { printf("mismatch\n"); return 1; }
                td += now() - t2;
                // and zlib's inflate reads it
                if (b == 0) { z_stream i; memset(&i, 0, sizeof i); inflateInit2(&i, -15); i.next_in = out; i.avail_in = n; i.next_out = back; i.avail_out = blockBytes; int r = inflate(&i, Z_FINISH); if (r != Z_STREAM_END || i.total_out != blockBytes) { printf("zlib cannot read it\n"); return 1; } inflateEnd(&i); }
            }
            double tl = now() - t1 - td;
            printf("libdeflate %d block %6zu: %7.1f MB/s  ratio %.2f  %.1f us/block  decompress %.0f MB/s\n", level, blockBytes, total / tl / 1e6, (double)total / lout, tl / blocks * 1e6, total / td / 1e6);
            libdeflate_free_compressor(c); libdeflate_free_decompressor(d);
        }
    }
}
