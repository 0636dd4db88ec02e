# mta/cli/cli_logfiles.c (cli_log_each) over mta/core/logkeep.c's names: a
# log's rotated files, compressed or not, oldest first, then the file.
outpost_unit_test(logfiles_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/logfiles_test.c
		${PROJECT_SOURCE_DIR}/mta/cli/cli_logfiles.c
	DEPS outpost_core LIBS PkgConfig::ZLIB)
