# mta/receive/scan_mime.c: the MIME leaf walker of the malware scan, on
# untrusted octets (every submitted message).  Registers fuzz/scan_mime and
# asan/fuzz/scan_mime (corpus replay) and, with OUTPOST_FUZZ=ON,
# build/fuzz/scan_mime_fuzz:
#     build/fuzz/scan_mime_fuzz -max_len=65536 t/fuzz/corpus/scan_mime
outpost_fuzz(scan_mime
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/scan_mime_fuzz.c
		${PROJECT_SOURCE_DIR}/mta/receive/scan_mime.c
		${PROJECT_SOURCE_DIR}/mta/receive/mime.c
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/scan_mime)
