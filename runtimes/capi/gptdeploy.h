/*
 * gptdeploy.h - the C API of gptdeploy: load a model bundle (or checkpoint) and generate text from C or C++.
 *
 * The library, libgptdeploy.so, runs gptdeploy's own Python runtimes and sampler inside an embedded CPython
 * interpreter, so a C caller gets exactly the tokens `gptdeploy.generate.generate()` gives in Python.
 * Build it with `gptdeploy capi build -o DIR` (it writes DIR/libgptdeploy.so, DIR/gptdeploy.h, DIR/gptdeploy.pc).
 *
 * FINDING THE LIBRARY AND ITS PYTHON
 *   The service finds libgptdeploy.so like any shared library: link with the rpath the pkg-config file adds
 *   (`PKG_CONFIG_PATH=DIR pkg-config --cflags --libs gptdeploy` gives -IDIR -LDIR -Wl,-rpath,DIR -lgptdeploy),
 *   or put DIR in LD_LIBRARY_PATH, or copy the library to a system folder and run ldconfig. Hosts that load
 *   plugins may also dlopen() it (RTLD_LOCAL is fine).
 *   libgptdeploy.so itself records the absolute paths of the interpreter it was built with: libpythonX.Y.so is
 *   found through the library's own rpath, and the interpreter starts as that exact executable, in isolated mode
 *   (PATH, PYTHONHOME, PYTHONPATH and the user site folder are ignored), so it always sees the site-packages
 *   that gptdeploy, numpy, tokenizers, cffi and the backend (onnxruntime, torch) were installed into.
 *   Moving or deleting that Python installation breaks the library: rebuild it with the Python you deploy.
 *
 * CONVENTIONS
 *   - Every fallible function returns a gd_status; GD_OK is 0. Any other status leaves a one-line message in
 *     gd_last_error() (thread-local). Every fallible call clears the message on entry.
 *   - Strings passed in are NUL-terminated UTF-8, borrowed only for the duration of the call.
 *   - Strings written out are UTF-8 and NUL-terminated, into buffers the caller owns. A "required" size always
 *     counts the terminating NUL. A buffer that is too small gets GD_E_BUFFER_TOO_SMALL and the required size;
 *     buffer NULL with capacity 0 is the way to ask for the size.
 *   - Structs passed in or out start with `struct_size`, which the caller sets to sizeof(the struct) from the
 *     header it compiled against. Later versions only append fields, so a library reads an old, shorter struct
 *     with defaults for the fields it lacks; a struct_size the library does not know gives GD_E_VERSION.
 *   - Out-of-range parameters, NULL where a pointer is required, invalid UTF-8, a missing model folder, a stale
 *     handle: each returns its status and message. Nothing the caller passes crashes the process, except
 *     pointers that are neither NULL nor valid (dangling, too short, not NUL-terminated).
 *
 * THREADS
 *   - Every function may be called from any thread, including threads the library has never seen.
 *   - The embedded Python starts on the first call of any function other than gd_abi_version, gd_version and
 *     gd_last_error (about 0.1-0.5 s for the interpreter, numpy and tokenizers; the first gd_model_load then
 *     imports the backend), and is never shut down. Do not fork() after that point.
 *   - Python's GIL is held only while Python code runs; ONNX Runtime and PyTorch release it while they compute,
 *     so generations on different models run in parallel.
 *   - A gd_model runs its own engine thread: gd_generate and gd_generate_stream calls on the same model from any
 *     number of threads share its KV cache (up to 4 generations at once; more wait for a free slot) and are
 *     decoded together, one step of the model for all of them. gd_tokenize and gd_detokenize never wait.
 *   - A stream callback runs on the calling thread: it may call any function, a generation on its own model
 *     included, except gd_model_free on its own model (refused with GD_E_BUSY).
 *   - gd_model_free must not race with other calls on the same model (like free()).
 */
#ifndef GPTDEPLOY_H
#define GPTDEPLOY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GD_API __attribute__((visibility("default")))
#else
#define GD_API
#endif

/* The ABI this header describes. It only grows (new functions, fields appended to structs), so a library serves
 * every caller compiled against a header whose GD_ABI_VERSION is <= gd_abi_version(); check that at startup. */
#define GD_ABI_VERSION 1

typedef enum gd_status {
    GD_OK = 0,
    GD_E_NULL_ARGUMENT = 1,    /* a required pointer was NULL */
    GD_E_INVALID_ARGUMENT = 2, /* a value is out of range or unusable: a sampling parameter, an empty or too long
                                  prompt, a token id outside the vocabulary, an unknown handle, an empty path */
    GD_E_INVALID_UTF8 = 3,     /* a string passed in is not valid UTF-8 (the message names the byte offset) */
    GD_E_BUFFER_TOO_SMALL = 4, /* the result does not fit; the required size was written */
    GD_E_VERSION = 5,          /* a struct_size this library does not know */
    GD_E_NOT_FOUND = 6,        /* the model folder does not exist */
    GD_E_BAD_MODEL = 7,        /* the folder is not a usable bundle or checkpoint (corrupt, incomplete, edited) */
    GD_E_BACKEND = 8,          /* the backend cannot run here or cannot open this folder (its library missing,
                                  no GPU, an unknown backend name, a folder that is neither bundle nor checkpoint) */
    GD_E_BUSY = 9,             /* gd_model_free on a model from that model's own stream callback */
    GD_E_CANCELLED = 10,       /* the stream callback asked to stop */
    GD_E_PYTHON = 11,          /* the embedded Python could not start or could not import gptdeploy */
    GD_E_INTERNAL = 12         /* a bug in gptdeploy: the message has the Python exception; please report it */
} gd_status;

typedef enum gd_finish_reason {
    GD_FINISH_LENGTH = 0,      /* max_new_tokens reached */
    GD_FINISH_STOP = 1,        /* a stop string was generated (it is not part of the text) */
    GD_FINISH_EOS = 2,         /* the model ended the text */
    GD_FINISH_CONTEXT_FULL = 3 /* the model's context window is full */
} gd_finish_reason;

/* An opened model: its runtime, KV cache and tokenizer. Created by gd_model_load, released by gd_model_free. */
typedef struct gd_model gd_model;

/* How to open a model. NULL strings mean the default, so for the defaults write
 * `gd_load_options options = {0}; options.struct_size = sizeof options;`, or pass NULL instead of options. */
typedef struct gd_load_options {
    size_t struct_size;    /* sizeof(gd_load_options) */
    const char *backend;   /* "auto" (default: onnxruntime for a bundle, torch for a checkpoint), "onnxruntime",
                              "torch", "tensorrt" */
    const char *device;    /* "cpu" (default), "cuda", "cuda:N" */
    const char *precision; /* "fp32" (default); in a bundle, the first artifact of this precision */
    const char *artifact;  /* a bundle artifact by name (see `gptdeploy inspect`); overrides precision */
} gd_load_options;

/* Sampling and stopping for one generation; the semantics of Python's GenerationConfig. Fill it with
 * gd_generation_params_init, then change what you need. */
typedef struct gd_generation_params {
    size_t struct_size;             /* sizeof(gd_generation_params) */
    int32_t max_new_tokens;         /* >= 1; generated tokens only, the prompt never counts (default 64) */
    double temperature;             /* >= 0; 0 = greedy (default) */
    int32_t top_k;                  /* >= 0; 0 = off (default) */
    double top_p;                   /* in (0, 1]; 1 = off (default) */
    double min_p;                   /* in [0, 1); 0 = off (default) */
    double repetition_penalty;      /* > 0; 1 = off (default) */
    uint64_t seed;                  /* sampling seed (default 0): the same seed gives the same tokens */
    const char *const *stop_strings; /* generation ends before the first occurrence of any of these non-empty
                                        UTF-8 strings, which the text excludes; borrowed for the call (default
                                        NULL) */
    size_t stop_string_count;       /* entries in stop_strings (default 0) */
    int32_t ignore_eos;             /* nonzero: keep generating past the end-of-text token (default 0) */
} gd_generation_params;

/* What happened in one gd_generate call; written on GD_OK only. */
typedef struct gd_generation_info {
    size_t struct_size;             /* sizeof(gd_generation_info), set by the caller */
    gd_finish_reason finish_reason;
    int32_t prompt_tokens;          /* the prompt's tokens, the begin-of-text token included */
    int32_t generated_tokens;       /* without a final end-of-text token */
    double prefill_seconds;         /* the prompt pass */
    double decode_seconds;          /* the token-by-token steps, sampling included */
} gd_generation_info;

/* Receives the text of a streamed generation piece by piece, as soon as each piece is final. `piece` is UTF-8,
 * `size` bytes long, NUL-terminated, never split inside a character, and owned by the library: it is valid only
 * until the callback returns. The pieces joined equal gd_generate's text for the same prompt and parameters.
 * Return 0 to go on, anything else to cancel (gd_generate_stream then returns GD_E_CANCELLED). */
typedef int (*gd_stream_callback)(const char *piece, size_t size, void *user_data);

/* GD_ABI_VERSION of the library (may differ from the header's). Never fails, never starts Python. */
GD_API uint32_t gd_abi_version(void);

/* The gptdeploy version the library was built from, e.g. "0.1.0". A static string: never NULL, never free it. */
GD_API const char *gd_version(void);

/* The message of the last failed call on this thread, or "" after a successful one. Owned by the library;
 * valid until the next gd_* call on the same thread. Never NULL. */
GD_API const char *gd_last_error(void);

/* Fill `params` with the defaults above (struct_size included). */
GD_API gd_status gd_generation_params_init(gd_generation_params *params);

/* Open the bundle or checkpoint folder at `path` (a file-system path, any bytes but NUL). `options` may be NULL
 * for the defaults. On GD_OK, *out_model is a new handle the caller owns: release it with gd_model_free. On
 * failure *out_model is NULL. */
GD_API gd_status gd_model_load(const char *path, const gd_load_options *options, gd_model **out_model);

/* Release a model and its runtime; generations still running on it in other threads end early. NULL and
 * handles already freed are ignored; a call from the model's own stream callback is refused (gd_last_error
 * says so). */
GD_API void gd_model_free(gd_model *model);

/* Token ids of `text` (no begin-of-text token: gd_generate adds that itself) into the caller's `tokens` array of
 * `capacity` entries. *out_count (required) receives the number of tokens, on GD_OK and on
 * GD_E_BUFFER_TOO_SMALL (then nothing is written to `tokens`). */
GD_API gd_status gd_tokenize(gd_model *model, const char *text, int32_t *tokens, size_t capacity,
                             size_t *out_count);

/* The text of `count` token ids (special tokens skipped) into the caller's `buffer` of `capacity` bytes.
 * *out_required (may be NULL) receives the bytes needed, NUL included, on GD_OK and on GD_E_BUFFER_TOO_SMALL. */
GD_API gd_status gd_detokenize(gd_model *model, const int32_t *tokens, size_t count, char *buffer,
                               size_t capacity, size_t *out_required);

/* Complete `prompt` and write the completion (prompt excluded, cut before a stop string) into the caller's
 * `buffer` of `capacity` bytes. `params` may be NULL for the defaults; `info` may be NULL. *out_required (may be
 * NULL) receives the bytes needed, NUL included, on GD_OK and on GD_E_BUFFER_TOO_SMALL; a greedy or seeded call
 * repeated with a large enough buffer returns the same text. The text holds a NUL byte only if the model
 * generated one; out_required - 1 is its true length. */
GD_API gd_status gd_generate(gd_model *model, const char *prompt, const gd_generation_params *params, char *buffer,
                             size_t capacity, size_t *out_required, gd_generation_info *info);

/* Complete `prompt`, handing each final piece of text to `callback` on the calling thread as it is generated.
 * `params` may be NULL for the defaults; `user_data` is passed through untouched. Returns GD_OK when the
 * generation ended by itself, GD_E_CANCELLED when the callback stopped it. */
GD_API gd_status gd_generate_stream(gd_model *model, const char *prompt, const gd_generation_params *params,
                                    gd_stream_callback callback, void *user_data);

#ifdef __cplusplus
}
#endif

#endif /* GPTDEPLOY_H */
