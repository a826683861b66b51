/*
 * Opens libgptdeploy.so with dlopen(RTLD_LOCAL), as plugin hosts do, and times the start:
 *   startup LIBRARY BUNDLE PROMPT
 * prints "dlopen_ms<TAB>python_start_ms<TAB>load_ms<TAB>first_generate_ms<TAB>hex(greedy completion, 8 tokens)".
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

#include "gptdeploy.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
    if (argc != 4)
        return 2;
    double started = now_ms();
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    double opened = now_ms();
    gd_status (*params_init)(gd_generation_params *) = dlsym(library, "gd_generation_params_init");
    gd_status (*load)(const char *, const gd_load_options *, gd_model **) = dlsym(library, "gd_model_load");
    gd_status (*generate)(gd_model *, const char *, const gd_generation_params *, char *, size_t, size_t *,
                          gd_generation_info *) = dlsym(library, "gd_generate");
    const char *(*last_error)(void) = dlsym(library, "gd_last_error");
    gd_generation_params params;
    gd_model *model = NULL;
    char text[4096];
    if (params_init(&params) != GD_OK) { /* the first call starts Python */
        fprintf(stderr, "%s\n", last_error());
        return 1;
    }
    double python_started = now_ms();
    if (load(argv[2], NULL, &model) != GD_OK) {
        fprintf(stderr, "%s\n", last_error());
        return 1;
    }
    double loaded = now_ms();
    params.max_new_tokens = 8;
    if (generate(model, argv[3], &params, text, sizeof text, NULL, NULL) != GD_OK) {
        fprintf(stderr, "%s\n", last_error());
        return 1;
    }
    double generated = now_ms();
    printf("%.1f\t%.1f\t%.1f\t%.1f\t", opened - started, python_started - opened, loaded - python_started,
           generated - loaded);
    for (const char *c = text; *c; c++)
        printf("%02x", (unsigned char)*c);
    printf("\n");
    return 0;
}
