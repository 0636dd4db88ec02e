# dkim/reencode.c unit tests: lines over 998 octets re-encoded before
# signing (structures table, round trip through the test's own decoders,
# untouched parts byte-identical, refusals).
if(NOT TARGET outpost_dkim)
	message(WARNING "t/unit/reencode.cmake: no outpost_dkim (add_subdirectory(dkim) missing?): reencode_test not built")
	return()
endif()
outpost_unit_test(reencode_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/reencode_test.c
	DEPS outpost_dkim)
set_tests_properties(unit/reencode_test PROPERTIES TIMEOUT 300)
if(OUTPOST_ASAN_SUITE)
	set_tests_properties(asan/unit/reencode_test PROPERTIES TIMEOUT 300)
endif()
