// The preamble of an AVX-512 translation unit built on vec.h's 512-bit vectors: include this
// first, then the kernel's *_impl.h, whose source is then compiled for zmm registers in the
// avx512 namespace (the file itself gets the AVX-512 flags from CMakeLists.txt).
#pragma once

#define KK_ISA avx512
#define KK_ISA_AVX2 1
#define KK_ISA_AVX512 1
#define KK_VEC_512 1
// GCC 12 reports its own AVX-512 intrinsics' undefined-vector idiom (`__Y = __Y`) as
// (maybe) uninitialized once they are inlined into the kernels; every value is defined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
