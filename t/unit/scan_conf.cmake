# conf/conf_scan.c: the section scan (clamd, on_error, sizes, the cache).
outpost_unit_test(conf_test_scan
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/conf_test_scan.c
		${CMAKE_CURRENT_LIST_DIR}/conf_test_util.c
	DEPS outpost_conf)
