// UTF-8 well-formedness (Unicode Table 3-7: no overlong forms, no
// surrogates, nothing above U+10FFFF), for text that crosses the API.
#pragma once

#include <string_view>

namespace inferd {

bool IsValidUtf8(std::string_view text);

}  // namespace inferd
