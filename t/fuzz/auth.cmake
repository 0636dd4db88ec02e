# mta/receive/auth.c: what AUTH decodes before anyone is authenticated
# (base64, a PLAIN response).  Registers fuzz/auth and asan/fuzz/auth
# (corpus replay) and, with OUTPOST_FUZZ=ON, build/fuzz/auth_fuzz:
#     build/fuzz/auth_fuzz -max_len=4096 t/fuzz/corpus/auth
outpost_fuzz(auth
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/auth_fuzz.c
		${PROJECT_SOURCE_DIR}/mta/receive/auth.c
	DEPS outpost_receive
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/auth)
