# dkim/reencode.c on untrusted message bytes (lines over 998 octets made
# legal before signing).  Registers fuzz/reencode and asan/fuzz/reencode
# (corpus replay) and, with OUTPOST_FUZZ=ON, build/fuzz/reencode_fuzz:
#     build/fuzz/reencode_fuzz -max_len=300000 t/fuzz/corpus/reencode
# outpost_fuzz() lives in fuzz.cmake, which the glob in t/CMakeLists.txt
# includes after this file: defer the call until then.
set(_outpost_reencode_fuzz reencode
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/reencode_fuzz.c
		${PROJECT_SOURCE_DIR}/dkim/reencode.c
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/reencode)
if(COMMAND outpost_fuzz)
	outpost_fuzz(${_outpost_reencode_fuzz})
else()
	cmake_language(DEFER CALL outpost_fuzz ${_outpost_reencode_fuzz})
endif()
