# dns/cache.c on untrusted bytes: the raw-answer walker and answer decoding.
# Registers fuzz/dns and asan/fuzz/dns (corpus replay through t/fuzz/replay.c)
# and, with OUTPOST_FUZZ=ON, build/fuzz/dns_fuzz.  Seeds: `dns_test --corpus
# t/fuzz/corpus/dns`.  outpost_fuzz() lives in fuzz.cmake, which the glob in
# t/CMakeLists.txt includes after this file: defer the call until it exists.
set(_outpost_dns_fuzz dns
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dns_fuzz.c
		${PROJECT_SOURCE_DIR}/dns/cache.c
	LIBS PkgConfig::CARES
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/dns)
if(COMMAND outpost_fuzz)
	outpost_fuzz(${_outpost_dns_fuzz})
else()
	cmake_language(DEFER CALL outpost_fuzz ${_outpost_dns_fuzz})
endif()
