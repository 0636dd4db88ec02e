# bounce_embed.cmake — cmake -P script: IN (conf/bounce-categories) as the
# C array conf_bounce_builtin in OUT, so that the rules compiled into
# outpostd (used without a configuration file) are that file's text, byte
# for byte.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT}.tmp "/* Generated from conf/bounce-categories by conf/bounce_embed.cmake: do not edit. */\n#include <stddef.h>\n\nextern const char conf_bounce_builtin[];\nextern const size_t conf_bounce_builtin_len;\n\nconst char conf_bounce_builtin[] = {\n\t${body}0\n};\nconst size_t conf_bounce_builtin_len = ${len};\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
