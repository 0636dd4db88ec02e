# DSN building and the DSN list of a round (mta/deliver/bounce.c).  realloc is
# wrapped so the test can make allocations fail.
outpost_unit_test(bounce_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/bounce_test.c
	DEPS outpost_deliver)
foreach(v "" ${OUTPOST_VARIANTS})
	target_link_options(bounce_test${v} PRIVATE -Wl,--wrap=realloc)
endforeach()
