package demo;

import jakarta.servlet.annotation.WebServlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;

/** GET /demo/ -> a small HTML page saying which git sha runs here. */
@WebServlet(urlPatterns = "")
public class IndexServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;
    private final transient BuildInfo info = BuildInfo.load();

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        resp.setContentType("text/html;charset=UTF-8");
        resp.setHeader("Cache-Control", "no-store");
        String greeting = BuildInfo.htmlEscape(info.greeting());
        String sha = BuildInfo.htmlEscape(info.sha());
        resp.getWriter().print("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                + "<title>demo " + sha + "</title></head>\n<body>\n"
                + "<h1>" + greeting + "</h1>\n"
                + "<p>Running commit <code id=\"sha\">" + sha + "</code></p>\n"
                + "<p><a href=\"health\">health</a></p>\n</body></html>\n");
    }
}
