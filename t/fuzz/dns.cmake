# dns/cache.c on untrusted bytes: the raw-answer walker and answer decoding.
# Registers fuzz/dns and asan/fuzz/dns (corpus replay through t/fuzz/replay.c)
# and, with OUTPOST_FUZZ=ON, build/fuzz/dns_fuzz.  Seeds: `dns_test --corpus
# t/fuzz/corpus/dns`.  outpost_fuzz() comes from fuzz.cmake,
# which t/CMakeLists.txt includes first.
outpost_fuzz(dns
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dns_fuzz.c
		${PROJECT_SOURCE_DIR}/dns/cache.c
	LIBS PkgConfig::CARES
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/dns)
