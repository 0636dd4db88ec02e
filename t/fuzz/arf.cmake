# mta/receive/arf.c and arf_id.c: complaint reports (ARF) and the sealed
# identifier on untrusted octets (the feedback address takes mail from
# anyone).  Registers fuzz/arf and asan/fuzz/arf (corpus replay) and, with
# OUTPOST_FUZZ=ON, build/fuzz/arf_fuzz:
#     build/fuzz/arf_fuzz -max_len=16384 t/fuzz/corpus/arf
outpost_fuzz(arf
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/arf_fuzz.c
		${PROJECT_SOURCE_DIR}/mta/receive/arf.c
		${PROJECT_SOURCE_DIR}/mta/receive/mime.c
		${PROJECT_SOURCE_DIR}/mta/receive/arf_id.c
	DEPS outpost_queue
	LIBS PkgConfig::SODIUM
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/arf)
