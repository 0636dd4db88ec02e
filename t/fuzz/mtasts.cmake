# mta/deliver/mtasts.c: the MTA-STS policy file (from anyone's HTTPS
# server) and TXT record (from anyone's DNS).  Registers fuzz/mtasts and
# asan/fuzz/mtasts (corpus replay) and, with OUTPOST_FUZZ=ON,
# build/fuzz/mtasts_fuzz:
#     build/fuzz/mtasts_fuzz -max_len=65536 t/fuzz/corpus/mtasts
outpost_fuzz(mtasts
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/mtasts_fuzz.c
		${PROJECT_SOURCE_DIR}/mta/deliver/mtasts.c
	DEPS outpost_deliver
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/mtasts)
