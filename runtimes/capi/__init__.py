"""The C API: gptdeploy.h, and libgptdeploy.so built with cffi's embedding mode so C and C++ services run the same
runtimes and sampler as Python (`gptdeploy capi build -o DIR`; the example service is in samples/c/).
"""
