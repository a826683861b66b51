/*
 * Test driver for libgptdeploy.so: each mode exercises the C API and prints results one per line, text as hex,
 * for tests/runtimes/test_capi.py to compare with Python.
 *
 *   driver BUNDLE generate MAX_NEW TEMPERATURE TOP_K TOP_P REPETITION_PENALTY SEED PROMPT...
 *       per prompt: "status<TAB>hex(gd_generate text)<TAB>hex(gd_generate_stream pieces joined)<TAB>finish_reason
 *       <TAB>generated_tokens"
 *   driver BUNDLE threads MAX_NEW ROUNDS PROMPT...
 *       4 threads share one model; each runs every prompt ROUNDS times, starting at a different prompt;
 *       per call: "thread<TAB>prompt_index<TAB>status<TAB>hex(text)"
 *   driver BUNDLE errors CORRUPT_BUNDLE FILE
 *       per check: "name<TAB>status (-1 for a void function)<TAB>value<TAB>message"
 *   driver BUNDLE memory CALLS
 *       "rss_kib_after_warmup<TAB>rss_kib_after_CALLS_more<TAB>rss_kib_after_CALLS_more_again"
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gptdeploy.h"

#define THREADS 4

static void print_hex(const char *data, size_t size) {
    for (size_t i = 0; i < size; i++)
        printf("%02x", (unsigned char)data[i]);
}

/* ---- generate ------------------------------------------------------------------------------------------- */

struct text {
    char data[65536];
    size_t size;
};

static int collect(const char *piece, size_t size, void *user_data) {
    struct text *text = user_data;
    if (piece[size] != '\0' || text->size + size >= sizeof text->data)
        return 1; /* a piece must be NUL-terminated; cancelling shows up as a failed comparison */
    memcpy(text->data + text->size, piece, size);
    text->size += size;
    return 0;
}

static int run_generate(gd_model *model, int argc, char **argv) {
    if (argc < 7)
        return 2;
    gd_generation_params params;
    if (gd_generation_params_init(&params) != GD_OK)
        return 1;
    params.max_new_tokens = atoi(argv[0]);
    params.temperature = atof(argv[1]);
    params.top_k = atoi(argv[2]);
    params.top_p = atof(argv[3]);
    params.repetition_penalty = atof(argv[4]);
    params.seed = strtoull(argv[5], NULL, 10);
    for (int i = 6; i < argc; i++) {
        static char buffer[65536];
        static struct text streamed;
        gd_generation_info info = {0};
        info.struct_size = sizeof info;
        size_t required = 0;
        gd_status status = gd_generate(model, argv[i], &params, buffer, sizeof buffer, &required, &info);
        streamed.size = 0;
        gd_status stream_status = gd_generate_stream(model, argv[i], &params, collect, &streamed);
        printf("%d\t", status != GD_OK ? (int)status : (int)stream_status);
        print_hex(buffer, status == GD_OK ? required - 1 : 0);
        printf("\t");
        print_hex(streamed.data, streamed.size);
        printf("\t%d\t%d\n", (int)info.finish_reason, info.generated_tokens);
    }
    return 0;
}

/* ---- threads -------------------------------------------------------------------------------------------- */

struct worker {
    pthread_t thread;
    int index, rounds, prompt_count;
    gd_model *model;
    char **prompts;
    gd_generation_params *params;
    char (*texts)[4096];     /* rounds * prompt_count results */
    gd_status *statuses;
};

static void *work(void *arg) {
    struct worker *w = arg;
    for (int call = 0; call < w->rounds * w->prompt_count; call++) {
        int prompt = (w->index + call) % w->prompt_count;
        w->statuses[call] = gd_generate(w->model, w->prompts[prompt], w->params, w->texts[call], 4096, NULL, NULL);
    }
    return NULL;
}

static int run_threads(gd_model *model, int argc, char **argv) {
    if (argc < 3)
        return 2;
    gd_generation_params params;
    if (gd_generation_params_init(&params) != GD_OK)
        return 1;
    params.max_new_tokens = atoi(argv[0]);
    int rounds = atoi(argv[1]), prompt_count = argc - 2, calls = rounds * prompt_count;
    struct worker workers[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (struct worker){.index = t, .rounds = rounds, .prompt_count = prompt_count, .model = model,
                                     .prompts = argv + 2, .params = &params,
                                     .texts = calloc(calls, 4096), .statuses = calloc(calls, sizeof(gd_status))};
        pthread_create(&workers[t].thread, NULL, work, &workers[t]);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(workers[t].thread, NULL);
    for (int t = 0; t < THREADS; t++) {
        for (int call = 0; call < calls; call++) {
            printf("%d\t%d\t%d\t", t, (t + call) % prompt_count, (int)workers[t].statuses[call]);
            print_hex(workers[t].texts[call], strlen(workers[t].texts[call]));
            printf("\n");
        }
        free(workers[t].texts);
        free(workers[t].statuses);
    }
    return 0;
}

/* ---- errors --------------------------------------------------------------------------------------------- */

static void report_message(const char *name, int status, long long value, const char *message) {
    printf("%s\t%d\t%lld\t%s\n", name, status, value, message);
}

static void report(const char *name, gd_status status, long long value) {
    report_message(name, (int)status, value, gd_last_error());
}

/* Reports the status, and as value whether *out_model holds a handle afterwards. */
static void check_load(const char *name, const char *path, const gd_load_options *options, gd_model **out_model) {
    *out_model = (gd_model *)(uintptr_t)0x1; /* must be overwritten either way */
    gd_status status = gd_model_load(path, options, out_model);
    report(name, status, *out_model != NULL);
}

/* What the stream callback saw when it called back into the library on the model that is streaming. */
static gd_model *reentrant_model;
static gd_status reentrant_status = GD_OK, tokenize_in_callback = GD_E_INTERNAL;
static char reentrant_message[512], tokenize_message[512], free_message[512];
static int pieces_seen;

static int reenter_then_cancel(const char *piece, size_t size, void *user_data) {
    (void)piece, (void)size, (void)user_data;
    char buffer[256];
    size_t count;
    int32_t tokens[64];
    if (pieces_seen++ == 0) {
        reentrant_status = gd_generate(reentrant_model, "Mia", NULL, buffer, sizeof buffer, NULL, NULL);
        snprintf(reentrant_message, sizeof reentrant_message, "%s", gd_last_error());
        tokenize_in_callback = gd_tokenize(reentrant_model, "Mia", tokens, 64, &count);
        snprintf(tokenize_message, sizeof tokenize_message, "%s", gd_last_error());
        gd_model_free(reentrant_model); /* refused: the model is generating on this thread */
        snprintf(free_message, sizeof free_message, "%s", gd_last_error());
    }
    return 1;
}

static void *fresh_thread_error(void *arg) {
    snprintf(arg, 256, "%s", gd_last_error());
    gd_generate(NULL, "x", NULL, NULL, 0, NULL, NULL); /* fails on this thread only */
    return NULL;
}

static void check_params(gd_model *model, const char *name, void (*change)(gd_generation_params *)) {
    gd_generation_params params;
    gd_generation_params_init(&params);
    change(&params);
    char buffer[256];
    report(name, gd_generate(model, "Mia lives in", &params, buffer, sizeof buffer, NULL, NULL), 0);
}

static void negative_temperature(gd_generation_params *p) { p->temperature = -1; }
static void nan_temperature(gd_generation_params *p) { p->temperature = NAN; }
static void zero_top_p(gd_generation_params *p) { p->top_p = 0; }
static void large_top_p(gd_generation_params *p) { p->top_p = 1.5; }
static void negative_top_k(gd_generation_params *p) { p->top_k = -1; }
static void one_min_p(gd_generation_params *p) { p->min_p = 1; }
static void zero_penalty(gd_generation_params *p) { p->repetition_penalty = 0; }
static void zero_max_new(gd_generation_params *p) { p->max_new_tokens = 0; }
static void old_struct(gd_generation_params *p) { p->struct_size = sizeof(size_t); }
static void null_stop_array(gd_generation_params *p) { p->stop_string_count = 2; }
static const char *const stops_with_null[] = {"in", NULL};
static void null_stop(gd_generation_params *p) { p->stop_strings = stops_with_null, p->stop_string_count = 2; }
static const char *const stops_bad_utf8[] = {"\xc3("};
static void bad_utf8_stop(gd_generation_params *p) { p->stop_strings = stops_bad_utf8, p->stop_string_count = 1; }
static const char *const stops_empty[] = {""};
static void empty_stop(gd_generation_params *p) { p->stop_strings = stops_empty, p->stop_string_count = 1; }

static int run_errors(gd_model *model, const char *bundle, int argc, char **argv) {
    if (argc < 2)
        return 2;
    gd_model *other = NULL;
    gd_load_options options = {0};
    options.struct_size = sizeof options;
    check_load("load_null_path", NULL, NULL, &other);
    report("load_null_out", gd_model_load(bundle, NULL, NULL), 0);
    check_load("load_empty_path", "", NULL, &other);
    check_load("load_missing", "/nonexistent/bundle", NULL, &other);
    check_load("load_corrupt", argv[0], NULL, &other);
    check_load("load_file", argv[1], NULL, &other);
    options.backend = "nope";
    check_load("load_unknown_backend", bundle, &options, &other);
    options.backend = NULL, options.device = "\xff";
    check_load("load_bad_utf8_device", bundle, &options, &other);
    options.device = NULL, options.struct_size = 3;
    check_load("load_old_options", bundle, &options, &other);
    options.struct_size = sizeof options;
    check_load("load_options_ok", bundle, &options, &other);

    char buffer[4096];
    size_t required = 0;
    report("generate_null_model", gd_generate(NULL, "Mia", NULL, buffer, sizeof buffer, NULL, NULL), 0);
    report("generate_bad_handle", gd_generate((gd_model *)(uintptr_t)0x1234, "Mia", NULL, buffer, sizeof buffer,
                                              NULL, NULL), 0);
    report("generate_null_prompt", gd_generate(model, NULL, NULL, buffer, sizeof buffer, NULL, NULL), 0);
    report("generate_bad_utf8", gd_generate(model, "Mia \xe2\x28\xa1", NULL, buffer, sizeof buffer, NULL, NULL), 0);
    report("generate_empty_prompt", gd_generate(model, "", NULL, buffer, sizeof buffer, NULL, NULL), 0);
    static char long_prompt[8192];
    for (int i = 0; i < 1000; i++)
        strcat(long_prompt, "Mia ");
    report("generate_long_prompt", gd_generate(model, long_prompt, NULL, buffer, sizeof buffer, NULL, NULL), 0);
    report("generate_null_buffer", gd_generate(model, "Mia", NULL, NULL, 16, NULL, NULL), 0);
    gd_generation_info info = {0};
    report("generate_old_info", gd_generate(model, "Mia", NULL, buffer, sizeof buffer, NULL, &info), 0);

    gd_generation_params params;
    report("params_init_null", gd_generation_params_init(NULL), 0);
    gd_generation_params_init(&params);
    params.max_new_tokens = 12, params.ignore_eos = 1;
    required = 0;
    gd_status status = gd_generate(model, "Mia lives in", &params, NULL, 0, &required, NULL);
    report("size_query", status, (long long)required);
    size_t needed = required;
    buffer[0] = 'x';
    status = gd_generate(model, "Mia lives in", &params, buffer, 4, &required, NULL);
    report("buffer_too_small", status, (long long)required * (buffer[0] == '\0'));
    status = gd_generate(model, "Mia lives in", &params, buffer, needed, &required, NULL);
    report("buffer_exact", status, (long long)(strlen(buffer) + 1 == needed));
    report("last_error_cleared", GD_OK, (long long)strlen(gd_last_error()));

    check_params(model, "negative_temperature", negative_temperature);
    check_params(model, "nan_temperature", nan_temperature);
    check_params(model, "zero_top_p", zero_top_p);
    check_params(model, "large_top_p", large_top_p);
    check_params(model, "negative_top_k", negative_top_k);
    check_params(model, "one_min_p", one_min_p);
    check_params(model, "zero_penalty", zero_penalty);
    check_params(model, "zero_max_new", zero_max_new);
    check_params(model, "old_params", old_struct);
    check_params(model, "null_stop_array", null_stop_array);
    check_params(model, "null_stop", null_stop);
    check_params(model, "bad_utf8_stop", bad_utf8_stop);
    check_params(model, "empty_stop", empty_stop);

    int32_t tokens[256];
    size_t count = 0;
    report("tokenize_null_count", gd_tokenize(model, "Mia lives in", tokens, 256, NULL), 0);
    status = gd_tokenize(model, "Mia lives in", NULL, 0, &count);
    report("tokenize_size_query", status, (long long)count);
    count = 0;
    status = gd_tokenize(model, "Mia lives in", tokens, 1, &count);
    report("tokenize_too_small", status, (long long)count);
    report("tokenize_bad_utf8", gd_tokenize(model, "\xc0\xaf", tokens, 256, &count), 0);
    status = gd_tokenize(model, "Mia lives in", tokens, 256, &count);
    report("tokenize", status, (long long)count);
    status = gd_detokenize(model, tokens, count, buffer, sizeof buffer, &required);
    report("detokenize_roundtrip", status, (long long)(strcmp(buffer, "Mia lives in") == 0));
    required = 0;
    status = gd_detokenize(model, tokens, count, buffer, 2, &required);
    report("detokenize_too_small", status, (long long)required);
    int32_t bad_tokens[] = {5, 99999};
    report("detokenize_out_of_vocab", gd_detokenize(model, bad_tokens, 2, buffer, sizeof buffer, NULL), 0);
    report("detokenize_null_tokens", gd_detokenize(model, NULL, 2, buffer, sizeof buffer, NULL), 0);

    report("stream_null_callback", gd_generate_stream(model, "Mia", NULL, NULL, NULL), 0);
    reentrant_model = model;
    status = gd_generate_stream(model, "Mia lives in", &params, reenter_then_cancel, NULL);
    report("stream_cancelled", status, pieces_seen);
    report_message("stream_reentrant_generate", reentrant_status, 0, reentrant_message);
    report_message("stream_reentrant_tokenize", tokenize_in_callback, 0, tokenize_message);
    report_message("stream_refused_free", -1, 0, free_message); /* gd_model_free returns nothing */
    report("model_alive_after_refused_free", gd_generate(model, "Mia", NULL, buffer, sizeof buffer, NULL, NULL), 0);

    gd_generate(NULL, "x", NULL, NULL, 0, NULL, NULL);
    char seen_by_new_thread[256];
    pthread_t thread;
    pthread_create(&thread, NULL, fresh_thread_error, seen_by_new_thread);
    pthread_join(thread, NULL);
    report("error_is_thread_local", GD_E_NULL_ARGUMENT, (long long)strlen(seen_by_new_thread));

    gd_model_free(other);
    gd_model_free(other); /* ignored */
    report("use_after_free", gd_generate(other, "Mia", NULL, buffer, sizeof buffer, NULL, NULL), 0);
    gd_model_free(NULL);
    return 0;
}

/* ---- memory --------------------------------------------------------------------------------------------- */

static long rss_kib(void) {
    FILE *file = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (file && fgets(line, sizeof line, file))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (file)
        fclose(file);
    return kib;
}

/* RSS after a warm-up, then after each of two windows of CALLS calls: a leak grows both windows alike, while
 * the allocator's one-off growth shows in one at most. */
static int run_memory(gd_model *model, int argc, char **argv) {
    if (argc < 1)
        return 2;
    gd_generation_params params;
    gd_generation_params_init(&params);
    params.max_new_tokens = 1, params.ignore_eos = 1;
    char buffer[1024];
    const char *prompts[] = {"Mia lives in", "The market in Hillford", "Tom had 12 apples"};
    int calls = atoi(argv[0]), warmup = 200;
    for (int call = 0; call < warmup + 2 * calls; call++) {
        if (call == warmup || call == warmup + calls)
            printf("%ld\t", rss_kib());
        if (gd_generate(model, prompts[call % 3], &params, buffer, sizeof buffer, NULL, NULL) != GD_OK) {
            fprintf(stderr, "call %d failed: %s\n", call, gd_last_error());
            return 1;
        }
    }
    printf("%ld\n", rss_kib());
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: driver BUNDLE generate|threads|errors|memory ARGS...\n");
        return 2;
    }
    if (gd_abi_version() < GD_ABI_VERSION) {
        fprintf(stderr, "libgptdeploy ABI %u is older than this header's %d\n", gd_abi_version(), GD_ABI_VERSION);
        return 1;
    }
    gd_model *model = NULL;
    if (gd_model_load(argv[1], NULL, &model) != GD_OK) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], gd_last_error());
        return 1;
    }
    const char *mode = argv[2];
    int rc = 2;
    if (strcmp(mode, "generate") == 0)
        rc = run_generate(model, argc - 3, argv + 3);
    else if (strcmp(mode, "threads") == 0)
        rc = run_threads(model, argc - 3, argv + 3);
    else if (strcmp(mode, "errors") == 0)
        rc = run_errors(model, argv[1], argc - 3, argv + 3);
    else if (strcmp(mode, "memory") == 0)
        rc = run_memory(model, argc - 3, argv + 3);
    gd_model_free(model);
    return rc;
}
