# mta/receive/scan_mime.c and scan_cache.c: the MIME leaf parts of a queued
# message and the verdict cache of the malware scan.
outpost_unit_test(scan_mime_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/scan_mime_test.c
	DEPS outpost_receive)
outpost_unit_test(scan_cache_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/scan_cache_test.c
	DEPS outpost_receive LIBS Threads::Threads)
