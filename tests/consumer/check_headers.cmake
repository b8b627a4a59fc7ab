# Every public header compiles on its own with -I include alone, and includes nothing but other
# public headers and the C++ standard library (with the C library under it): fmt, LLVM or a
# compiler/ or runtime/ header, even one found on a system path, fails the test.
#   cmake -DCXX=... -DSOURCE_DIR=... -P check_headers.cmake
file(GLOB headers ${SOURCE_DIR}/include/gradc/*.h)
set(failed "")
foreach(header ${headers})
  execute_process(
    COMMAND ${CXX} -std=c++20 -fsyntax-only -M -I ${SOURCE_DIR}/include -x c++ ${header}
    OUTPUT_VARIABLE deps ERROR_VARIABLE errors RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(SEND_ERROR "${header} does not compile on its own:\n${errors}")
    continue()
  endif()
  string(REGEX REPLACE "[\\\\\n\t ]+" ";" deps "${deps}")
  foreach(dep ${deps})
    if(dep MATCHES ":$" OR dep STREQUAL "" OR dep STREQUAL header)
      continue()
    endif()
    # Allowed: our public headers, libstdc++ (and the compiler's own), glibc's headers.
    if(dep MATCHES "^${SOURCE_DIR}/include/gradc/"
       OR dep MATCHES "/c\\+\\+/" OR dep MATCHES "^/usr/lib/gcc/" OR dep MATCHES "^/usr/lib/llvm-[0-9]+/lib/clang/"
       OR dep MATCHES "^/usr/include/[^/]+\\.h$"
       OR dep MATCHES "^/usr/include/(x86_64-linux-gnu|aarch64-linux-gnu|bits|sys|gnu|asm|asm-generic|linux)/")
      continue()
    endif()
    list(APPEND failed "${header} includes ${dep}")
  endforeach()
endforeach()
if(failed)
  list(JOIN failed "\n" text)
  message(FATAL_ERROR "public headers include what a user may not have:\n${text}")
endif()
list(LENGTH headers count)
message(STATUS "${count} public headers, each self-contained on the standard library")
