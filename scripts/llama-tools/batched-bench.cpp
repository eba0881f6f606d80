// evolve-batched-bench: llama.cpp's llama-batched-bench measurement loop on the plain llama.h API.
//
// Why it exists: the llama.cpp copy vendored in the llama-cpp-sys-2 crate ships without the
// sources of tools/ (server, batched-bench), and nothing may be downloaded. This port keeps
// batched-bench's method and output (same flags, same markdown table), so `evolve bench
// sample` can put our engine next to raw llama.cpp on the same library build:
//   - per (PP, TG, B): clear the KV cache, evaluate B prompts of PP random tokens (or one shared
//     prompt copied to B sequences with -pps), then TG steps that each decode B tokens with
//     logits on, timed with llama_synchronize; no sampling (the tokens are random).
//   - a warm-up decode first, as batched-bench does.
#include "llama.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static std::vector<int> parse_list(const char *s) {
    std::vector<int> out;
    std::string str(s);
    size_t pos = 0;
    while (pos <= str.size()) {
        size_t comma = str.find(',', pos);
        if (comma == std::string::npos) comma = str.size();
        out.push_back(std::atoi(str.substr(pos, comma - pos).c_str()));
        pos = comma + 1;
    }
    return out;
}

static double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

static void batch_add(llama_batch &b, llama_token t, llama_pos pos, llama_seq_id seq, bool logits) {
    b.token[b.n_tokens] = t;
    b.pos[b.n_tokens] = pos;
    b.n_seq_id[b.n_tokens] = 1;
    b.seq_id[b.n_tokens][0] = seq;
    b.logits[b.n_tokens] = logits;
    b.n_tokens++;
}

// Decodes in chunks of n_batch tokens, like batched-bench's decode_helper.
static bool decode(llama_context *ctx, llama_batch &batch, int n_batch) {
    for (int i = 0; i < batch.n_tokens; i += n_batch) {
        int n = std::min(n_batch, batch.n_tokens - i);
        llama_batch view = {n, batch.token + i, nullptr, batch.pos + i, batch.n_seq_id + i, batch.seq_id + i, batch.logits + i};
        if (llama_decode(ctx, view) != 0) {
            std::fprintf(stderr, "llama_decode failed\n");
            return false;
        }
    }
    return true;
}

static void quiet_log(ggml_log_level, const char *, void *) {}

int main(int argc, char **argv) {
    std::string model_path;
    int n_ctx = 2048, n_batch = 2048, n_ubatch = 512, threads = 4, threads_batch = -1;
    bool pps = false, kv_unified = false;
    std::vector<int> npp = {128}, ntg = {128}, npl = {1, 2, 4, 8, 16, 32};
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> const char * {
            if (i + 1 >= argc) { std::fprintf(stderr, "missing value for %s\n", a.c_str()); std::exit(2); }
            return argv[++i];
        };
        if (a == "-m" || a == "--model") model_path = next();
        else if (a == "-c" || a == "--ctx-size") n_ctx = std::atoi(next());
        else if (a == "-b" || a == "--batch-size") n_batch = std::atoi(next());
        else if (a == "-ub" || a == "--ubatch-size") n_ubatch = std::atoi(next());
        else if (a == "-t" || a == "--threads") threads = std::atoi(next());
        else if (a == "-tb" || a == "--threads-batch") threads_batch = std::atoi(next());
        else if (a == "-npp") npp = parse_list(next());
        else if (a == "-ntg") ntg = parse_list(next());
        else if (a == "-npl") npl = parse_list(next());
        else if (a == "-pps") pps = true;
        else if (a == "-kvu" || a == "--kv-unified") kv_unified = true;
        else { std::fprintf(stderr, "unknown argument %s\n", a.c_str()); return 2; }
    }
    if (model_path.empty()) { std::fprintf(stderr, "usage: %s -m MODEL [-c N] [-b N] [-ub N] [-t N] [-npp L] [-ntg L] [-npl L] [-pps] [-kvu]\n", argv[0]); return 2; }
    if (threads_batch < 0) threads_batch = threads;
    if (!std::getenv("EVOLVE_LLAMA_LOG")) llama_log_set(quiet_log, nullptr);

    llama_backend_init();
    llama_model *model = llama_model_load_from_file(model_path.c_str(), llama_model_default_params());
    if (!model) { std::fprintf(stderr, "cannot load %s\n", model_path.c_str()); return 1; }
    int max_pl = 1;
    for (int p : npl) max_pl = std::max(max_pl, p);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_ubatch = n_ubatch;
    cp.n_seq_max = max_pl;
    cp.n_threads = threads;
    cp.n_threads_batch = threads_batch;
    cp.kv_unified = kv_unified || pps;  // a shared prompt needs one cell pool to be shared
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { std::fprintf(stderr, "cannot create a context\n"); return 1; }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    const int n_kv_max = (int) llama_n_ctx(ctx);
    llama_memory_t mem = llama_get_memory(ctx);
    llama_batch batch = llama_batch_init(n_kv_max, 0, 1);

    // Warm-up, as batched-bench.
    batch.n_tokens = 0;
    for (int i = 0; i < 16; i++) batch_add(batch, std::rand() % n_vocab, i, 0, i == 15);
    if (!decode(ctx, batch, n_batch)) return 1;

    std::printf("main: n_kv_max = %d, n_batch = %d, n_ubatch = %d, is_pp_shared = %d, n_threads = %d, n_threads_batch = %d\n\n",
                n_kv_max, n_batch, n_ubatch, pps ? 1 : 0, threads, threads_batch);
    std::printf("|%6s | %6s | %4s | %6s | %8s | %8s | %8s | %8s | %8s | %8s |\n", "PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s", "S t/s");
    std::printf("|%6s-|-%6s-|-%4s-|-%6s-|-%8s-|-%8s-|-%8s-|-%8s-|-%8s-|-%8s-|\n", "------", "------", "----", "------", "--------", "--------", "--------", "--------", "--------", "--------");
    for (int pp : npp) for (int tg : ntg) for (int pl : npl) {
        const int n_ctx_req = pps ? pp + pl * tg : pl * (pp + tg);
        if (n_ctx_req > n_kv_max) continue;
        batch.n_tokens = 0;
        for (int s = 0; s < (pps ? 1 : pl); s++)
            for (int j = 0; j < pp; j++) batch_add(batch, std::rand() % n_vocab, j, s, false);
        batch.logits[batch.n_tokens - 1] = true;

        const double t_pp_start = now_s();
        llama_memory_clear(mem, false);
        if (!decode(ctx, batch, n_batch)) return 1;
        llama_synchronize(ctx);
        const double t_pp_end = now_s();
        if (pps) for (int s = 1; s < pl; s++) llama_memory_seq_cp(mem, 0, s, -1, -1);

        const double t_tg_start = now_s();
        for (int i = 0; i < tg; i++) {
            batch.n_tokens = 0;
            for (int s = 0; s < pl; s++) batch_add(batch, std::rand() % n_vocab, pp + i, s, true);
            if (!decode(ctx, batch, n_batch)) return 1;
        }
        llama_synchronize(ctx);
        const double t_tg_end = now_s();

        const double t_pp = t_pp_end - t_pp_start, t_tg = t_tg_end - t_tg_start, t = t_pp + t_tg;
        const double s_pp = (pps ? pp : pl * pp) / t_pp, s_tg = pl * tg / t_tg;
        const double s_all = (n_ctx_req) / t;
        std::printf("|%6d | %6d | %4d | %6d | %8.3f | %8.2f | %8.3f | %8.2f | %8.3f | %8.2f |\n", pp, tg, pl, n_ctx_req, t_pp, s_pp, t_tg, s_tg, t, s_all);
        std::fflush(stdout);
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
