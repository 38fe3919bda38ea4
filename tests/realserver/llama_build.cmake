# Included by CMake right after llama.cpp's project() while `make` builds llama-cpp-python for the tests
# (CMAKE_PROJECT_llama.cpp_INCLUDE, see the Makefile): the build keeps to what the Python bindings load.
#
# llama-cpp-python forces LLAMA_BUILD_COMMON on (a cache entry, FORCEd), but its Python code never loads
# libllama-common (nor cpp-httplib, built only for it): a normal variable of the same name shadows the
# cache entry in this directory, and option() leaves it alone (policy CMP0077). That is 250 s of the
# 700 s of CPU a full build takes here; LLAVA_BUILD=OFF (the multimodal library) is another 120 s.
set(LLAMA_BUILD_COMMON OFF)

# The tests run a model of a few hundred KB: -O1 is fast enough for it and compiles in less time than -O3.
set(CMAKE_C_FLAGS_RELEASE "-O1 -DNDEBUG")
set(CMAKE_CXX_FLAGS_RELEASE "-O1 -DNDEBUG")
