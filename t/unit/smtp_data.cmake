# mta/receive/smtp_data.c: the DATA/BDAT scanner, fed in every split.
outpost_unit_test(smtp_data_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_data_test.c
	DEPS outpost_receive)
