# mta/receive/arf.c and arf_id.c: complaint reports (ARF) and the sealed
# X-Outpost-FB identifier.
outpost_unit_test(arf_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/arf_test.c
	DEPS outpost_receive)
