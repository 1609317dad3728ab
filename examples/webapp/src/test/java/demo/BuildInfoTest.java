package demo;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import org.junit.jupiter.api.Test;

class BuildInfoTest {
    @Test
    void healthJsonReportsTheSha() {
        BuildInfo info = new BuildInfo("0123abc", "hi");
        assertEquals("{\"status\":\"UP\",\"sha\":\"0123abc\"}", info.healthJson());
    }

    @Test
    void missingOrUnfilteredShaIsUnknown() {
        assertEquals("unknown", new BuildInfo(null, "hi").sha());
        assertEquals("unknown", new BuildInfo(" ", "hi").sha());
        assertEquals("unknown", new BuildInfo("${git.sha}", "hi").sha());
    }

    @Test
    void jsonAndHtmlAreEscaped() {
        assertEquals("a\\\"b\\\\c\\u000a", BuildInfo.jsonEscape("a\"b\\c\n"));
        assertEquals("&lt;b&gt; &amp; &quot;", BuildInfo.htmlEscape("<b> & \""));
    }

    @Test
    void buildFilledInTheResource() {
        BuildInfo info = BuildInfo.load();
        assertFalse(info.sha().isBlank());
        assertFalse(info.greeting().isEmpty());
    }
}
