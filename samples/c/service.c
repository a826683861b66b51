/*
 * An example service on gptdeploy's C API: it loads a bundle once, then reads prompts from stdin, one per line,
 * and streams each completion to stdout as it is generated, followed by a newline. It exits at the end of input:
 * 0 if every prompt was served, 1 otherwise (each failure is reported on stderr).
 *
 *   service [-n MAX_NEW_TOKENS] [-t TEMPERATURE] [-k TOP_K] [-p TOP_P] [-s SEED] [-b BACKEND] [-d DEVICE] BUNDLE
 *
 * In a line, "\n" stands for a newline and "\\" for a backslash, so multi-line prompts fit on one line:
 *   printf 'Q: What is 12 plus 30?\\nA:\n' | build/samples/service runs/demo/bundle
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gptdeploy.h"

static int write_piece(const char *piece, size_t size, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, size, stdout);
    return fflush(stdout) != 0; /* stop generating if nobody reads any more */
}

/* Turn the escapes "\n" and "\\" into a newline and a backslash, in place; drop the line's own newline. */
static void unescape(char *line) {
    char *out = line;
    for (const char *in = line; *in && *in != '\n'; in++) {
        if (in[0] == '\\' && (in[1] == 'n' || in[1] == '\\'))
            *out++ = *++in == 'n' ? '\n' : '\\';
        else
            *out++ = *in;
    }
    *out = '\0';
}

int main(int argc, char **argv) {
    gd_generation_params params;
    gd_load_options options = {0};
    options.struct_size = sizeof options;
    if (gd_abi_version() < GD_ABI_VERSION || gd_generation_params_init(&params) != GD_OK) {
        fprintf(stderr, "service: libgptdeploy %s cannot serve this program: %s\n", gd_version(), gd_last_error());
        return 1;
    }
    for (int option; (option = getopt(argc, argv, "n:t:k:p:s:b:d:")) != -1;) {
        switch (option) {
        case 'n': params.max_new_tokens = atoi(optarg); break;
        case 't': params.temperature = atof(optarg); break;
        case 'k': params.top_k = atoi(optarg); break;
        case 'p': params.top_p = atof(optarg); break;
        case 's': params.seed = strtoull(optarg, NULL, 10); break;
        case 'b': options.backend = optarg; break;
        case 'd': options.device = optarg; break;
        default: return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: service [-n MAX_NEW_TOKENS] [-t TEMPERATURE] [-k TOP_K] [-p TOP_P] [-s SEED] "
                        "[-b BACKEND] [-d DEVICE] BUNDLE\n");
        return 2;
    }
    gd_model *model = NULL;
    if (gd_model_load(argv[optind], &options, &model) != GD_OK) {
        fprintf(stderr, "service: %s\n", gd_last_error());
        return 1;
    }
    char *line = NULL;
    size_t capacity = 0;
    int failed = 0;
    while (getline(&line, &capacity, stdin) != -1) {
        unescape(line);
        gd_status status = gd_generate_stream(model, line, &params, write_piece, NULL);
        if (status != GD_OK) {
            fprintf(stderr, "service: %s\n", gd_last_error());
            failed = 1;
        }
        putchar('\n');
        fflush(stdout);
    }
    free(line);
    gd_model_free(model);
    return failed;
}
