# embed.cmake - cmake -DIN=FILE -DOUT=FILE.c -P embed.cmake: FILE's bytes as
# `const unsigned char fd_dashboard_html[]` and its length (NUL-terminated).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n2)
math(EXPR n "${n2} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* generated from daemon/dashboard.html by tools/embed.cmake: do not edit */\n"
  "#include <stddef.h>\n"
  "const unsigned char fd_dashboard_html[] = {\n${bytes}0x00};\n"
  "const size_t fd_dashboard_html_len = ${n};\n")
