# mta/receive/smtp_data.c: the DATA/BDAT scanner on untrusted octets, fed in pieces.
# Registers fuzz/smtp_data and asan/fuzz/smtp_data (corpus replay) and,
# with OUTPOST_FUZZ=ON, build/fuzz/smtp_data_fuzz:
#     build/fuzz/smtp_data_fuzz -max_len=4096 t/fuzz/corpus/smtp_data
outpost_fuzz(smtp_data
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_data_fuzz.c
		${PROJECT_SOURCE_DIR}/mta/receive/smtp_data.c
	CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/smtp_data)
